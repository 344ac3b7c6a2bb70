"""Coreset selection time: anomalib's KCenterGreedy vs IADBE's, on the same projected embedding.

    python bench/coreset.py [--patches 60000] [--dims 1000] [--ratio 0.1] [--steps 600]

Both run the same number of greedy steps from the same first point on the same features; the
script checks that they select the same points and prints both times and the speedup. (A full
60,000 x 1,000 selection at ratio 0.1 is 6,000 steps; --steps measures a prefix so the stock
run stays short; the per-step cost is constant.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def stock_greedy(embedding: "torch.Tensor", features: "torch.Tensor", steps: int, first: int = 0) -> list[int]:
    """anomalib's KCenterGreedy loop (its sample_coreset) from ``first``, for ``steps`` steps."""
    import torch
    from anomalib.models.components.sampling import KCenterGreedy

    stock = KCenterGreedy(embedding=embedding, sampling_ratio=0.1)  # the ratio only sizes sample_coreset
    stock.features = features
    stock.reset_distances()
    index, chosen = torch.tensor(first), [first]
    for _ in range(steps - 1):
        stock.update_distances(cluster_center=index)
        index = stock.get_new_idx()
        stock.min_distances.scatter_(0, index.unsqueeze(0).unsqueeze(1), 0.0)
        chosen.append(int(index))
    return chosen


def tire_embedding(patches: int, dims: int) -> "torch.Tensor":
    """PatchCore's patch embedding of tire training images, as many rows as ``patches``.

    Lite0's embedding has 152 dims; to reach ``dims`` we concatenate it with itself under fixed
    random rotations (distances scale uniformly, so the geometry the greedy search sees is the
    real one).
    """
    import numpy as np
    import torch
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel
    from PIL import Image

    from iadbe.backbones import ensure_offline_backbones

    ensure_offline_backbones()
    model = PatchcoreModel(layers=["blocks.2", "blocks.4"], backbone="tf_efficientnet_lite0", pre_trained=True)
    model.train()
    from iadbe import constants

    folder = constants.SHARED_DATA / "mvtec_3d" / "tire" / "train" / "good" / "rgb"
    if not folder.is_dir():
        raise SystemExit(f"real data not found at {folder}: use --source random")
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    for path in sorted(folder.glob("*.png")):
        image = Image.open(path).convert("RGB").resize((256, 256))
        tensor = (torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float() / 255 - mean) / std
        with torch.no_grad():
            model(tensor.unsqueeze(0))
        if sum(len(e) for e in model.embedding_store) >= patches:
            break
    embedding = torch.vstack(model.embedding_store)[:patches]
    generator = torch.Generator().manual_seed(0)
    blocks = []
    while sum(b.shape[1] for b in blocks) < dims:
        rotation, _ = torch.linalg.qr(torch.randn(embedding.shape[1], embedding.shape[1], generator=generator))
        blocks.append(embedding @ rotation)
    return torch.cat(blocks, 1)[:, :dims].contiguous()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patches", type=int, default=60000)
    parser.add_argument("--dims", type=int, default=1000)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--source", choices=["tire", "random"], default="tire",
                        help="tire: PatchCore's own embedding (Lite0, blocks.2+4) of tire training "
                             "images, tiled to --patches rows of --dims; random: Gaussian noise")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    """Both selections, interleaved over ``args.repeats`` rounds: medians, speedup, identical count."""
    import torch

    from iadbe.models.coreset import k_center_greedy, project_like_anomalib

    torch.manual_seed(0)
    embedding = (tire_embedding(args.patches, args.dims) if args.source == "tire"
                 else torch.randn(args.patches, args.dims))
    features = project_like_anomalib(embedding)
    steps = min(args.steps, int(args.patches * args.ratio))
    first = 0

    def run_stock() -> list[int]:
        return stock_greedy(embedding, features, steps, first)

    # interleaved (ABAB...) so both sides see the same machine load; medians reported
    stock_times, our_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        chosen = run_stock()
        stock_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = k_center_greedy(features, steps, first)
        our_times.append(time.perf_counter() - start)
    stock_s, ours_s = statistics.median(stock_times), statistics.median(our_times)
    return {"stock_s": stock_s, "ours_s": ours_s, "speedup": stock_s / ours_s, "steps": steps,
            "same": sum(a == b for a, b in zip(chosen, ours)), "projected_dims": features.shape[1]}


def main() -> None:
    args = parse_args()
    result = measure(args)
    steps, stock_s, ours_s = result["steps"], result["stock_s"], result["ours_s"]
    print(f"embedding {args.patches} x {args.dims} -> projected {result['projected_dims']} dims; {steps} greedy steps")
    print(f"{args.repeats} interleaved rounds, medians:")
    print(f"anomalib KCenterGreedy  {stock_s:8.2f} s  ({steps / stock_s:7.1f} steps/s)")
    print(f"iadbe k_center_greedy   {ours_s:8.2f} s  ({steps / ours_s:7.1f} steps/s)")
    print(f"speedup {result['speedup']:.1f}x (target 10x: {'PASS' if result['speedup'] >= 10 else 'FAIL'}); "
          f"identical selections: {result['same']}/{steps}")


if __name__ == "__main__":
    main()
