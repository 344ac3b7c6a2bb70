"""IADBE's CPU path against stock anomalib inference, same model, side by side in one run.

    python bench/stock.py [--runs 50] [--threads 2]

For PaDiM and PatchCore (Lite0, 256 px) the *same* trained model (same weights, same memory bank, same
normalisation statistics) is served three ways:

* stock torch: anomalib's ``to_torch`` export loaded by ``TorchInferencer`` (needs ``TRUST_REMOTE_CODE=1``,
  set here for this process only: the pickle is the one this script just wrote);
* stock OpenVINO: anomalib's ``to_openvino`` export loaded by ``OpenVINOInferencer``;
* IADBE: ``iadbe.load_model(dir)`` on the CPU (OpenVINO) and ``LoadedModel.predict``.

Every side gets the same decoded RGB image (uint8, as read from disk) and does its own resizing,
normalisation, inference and score/map normalisation. Timings are medians over --runs calls at batch 1
after warm-up, the three sides interleaved round by round so that they see the same machine load; the
images/s column is batch 8. The normalised scores of all sides are compared on 8 real images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import numpy as np

from _models import CACHE, bench_images, trained_model
from _timing import median_ms

TARGETS = {"torch": 4.0, "openvino": 1.5}  # IADBE must be this many times faster than the stock side


def stock_module(model_dir: Path):
    """A stock anomalib PaDiM / PatchCore holding the weights and statistics of an IADBE model directory."""
    from anomalib.models import Padim, Patchcore
    from anomalib.pre_processing import PreProcessor
    from safetensors.torch import load_file
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    from iadbe.graph import load_state_resizing_buffers

    meta = json.loads((model_dir / "iadbe.json").read_text())
    detector = meta["detector"]
    norm = meta["normalization"]
    transform = Compose([Resize(tuple(detector["image_size"]), antialias=True),
                         Normalize(mean=norm["mean"], std=norm["std"])])
    cls = {"padim": Padim, "patchcore": Patchcore}[detector["model"]]
    module = cls(**detector["init_args"], pre_trained=False, pre_processor=PreProcessor(transform=transform),
                 evaluator=False, visualizer=False)
    weights = model_dir / "weights.safetensors"
    load_state_resizing_buffers(module.model, load_file(str(weights)), weights)
    post = module.post_processor
    stats = meta["postprocess"]
    for name in ("image_min", "image_max", "pixel_min", "pixel_max"):
        getattr(post, name).fill_(stats[name])
    post._image_threshold.fill_(stats["image_threshold"])
    post._pixel_threshold.fill_(stats["pixel_threshold"])
    return module.eval()


def export_stock(model_dir: Path, name: str) -> tuple[Path, Path]:
    """anomalib's own exports of the model: (torch .pt, OpenVINO .xml), written once under the bench cache.

    The OpenVINO export asks for a dynamic batch, height and width. anomalib 2.7 still fixes PatchCore's batch
    at 2 (the traced ``topk``/reshape), where batch 1 fails; it is then exported again with only H and W
    dynamic, which gives a working batch-1 model (and no batch 8; the table says so).
    """
    import openvino as ov

    root = CACHE / "stock" / name
    pt, xml = root / "weights" / "torch" / "model.pt", root / "weights" / "openvino" / "model.xml"
    if pt.is_file() and xml.is_file() and pt.stat().st_mtime > (model_dir / "iadbe.json").stat().st_mtime:
        return pt, xml
    module = stock_module(model_dir)
    module.to_torch(root)
    module.to_openvino(root, onnx_kwargs={"dynamic_axes": {"input": {0: "batch", 2: "height", 3: "width"}}})
    batch = ov.Core().read_model(str(xml)).input(0).get_partial_shape()[0]
    if batch.is_static and batch.get_length() != 1:
        module.to_openvino(root, onnx_kwargs={"dynamic_axes": {"input": {2: "height", 3: "width"}}})
    return pt, xml


def stock_inferencers(pt: Path, xml: Path) -> dict:
    """anomalib's inferencers: torch, OpenVINO with its defaults (bf16 on CPUs with AMX) and OpenVINO in f32."""
    from anomalib.deploy import OpenVINOInferencer, TorchInferencer

    os.environ["TRUST_REMOTE_CODE"] = "1"  # our own pickle, written a moment ago by export_stock
    here = Path.cwd()
    os.chdir(xml.parent)  # OpenVINOInferencer writes ./openvino_cache into the working directory
    try:
        return {
            "anomalib TorchInferencer": TorchInferencer(path=pt, device="cpu"),
            "anomalib OpenVINOInferencer": OpenVINOInferencer(path=xml, device="CPU"),
            "anomalib OpenVINOInferencer f32": OpenVINOInferencer(path=xml, device="CPU",
                                                                  config={"INFERENCE_PRECISION_HINT": "f32"}),
        }
    finally:
        os.chdir(here)


#: (IADBE side, stock side, target speed-up, what the row compares)
COMPARISONS = [
    ("IADBE f32", "anomalib TorchInferencer", 4.0, "defaults: torch"),
    ("IADBE bf16", "anomalib TorchInferencer", 4.0, "bf16* vs torch"),
    ("IADBE f32", "anomalib OpenVINOInferencer f32", 1.5, "OpenVINO, both f32"),
    ("IADBE bf16", "anomalib OpenVINOInferencer", 1.5, "OpenVINO, both bf16*"),
    ("IADBE auto", "anomalib OpenVINOInferencer", 1.5, "defaults: OpenVINO"),
]


def stock_scores(inferencer, images: list[np.ndarray]) -> np.ndarray:
    return np.array([float(np.asarray(inferencer.predict(image).pred_score).reshape(-1)[0]) for image in images])


def interleaved_ms(sides: dict, runs: int, rounds: int = 5) -> dict[str, float]:
    """Median ms per call of each side, measured in `rounds` interleaved rounds after three warm-up calls."""
    for fn in sides.values():
        for _ in range(3):
            fn()
    per_round = max(1, runs // rounds)
    samples: dict[str, list[float]] = {key: [] for key in sides}
    for _ in range(rounds):
        for key, fn in sides.items():
            samples[key].append(median_ms(fn, per_round))
    return {key: statistics.median(values) for key, values in samples.items()}


def batch_of_eight(inferencer, images: list[np.ndarray]):
    """A call of the stock inferencer on 8 images at once, or None where its export cannot take a batch of 8."""
    import torch

    stacked = np.stack(images)
    batch = stacked.astype(np.float32) / 255.0 if hasattr(inferencer, "input_blob") else \
        torch.from_numpy(stacked).permute(0, 3, 1, 2).float() / 255.0
    try:
        inferencer.predict(batch)
    except Exception as error:  # noqa: BLE001 - reported in the table, e.g. the export's fixed batch
        return None, str(error).splitlines()[-1][:90]
    return (lambda: inferencer.predict(batch)), ""


def measure(runs: int = 50, threads: int = 2) -> list[dict]:
    """One row per (model, comparison): latencies, images/s at batch 8, speed-up, score agreement."""
    import torch

    torch.set_num_threads(threads)
    os.environ["IADBE_CPU_THREADS"] = str(threads)
    from iadbe import constants
    from iadbe.inference import load_model
    from iadbe.images import load_image, resize_rgb

    constants.CPU_THREADS = threads
    images = [load_image(p) for p in bench_images(8)]
    rows = []
    for name in ("padim", "patchcore"):
        model_dir = trained_model(name)
        # auto: the precision the model's export check kept (iadbe/precision.py), IADBE's default
        ours = {f"IADBE {p}": load_model(model_dir, backend="openvino", precision=p) for p in ("f32", "bf16", "auto")}
        stock = stock_inferencers(*export_stock(model_dir, name))
        # Scores are compared at the model's size, where every side's resize is the identity
        # (anomalib resizes with torchvision's antialiased bilinear, IADBE with OpenCV's area filter).
        sized = [resize_rgb(image, tuple(ours["IADBE f32"].config.image_size)) for image in images]
        reference = np.array([p.score for p in ours["IADBE f32"].predict(sized)])
        scores = {key: np.array([p.score for p in model.predict(sized)]) for key, model in ours.items()}
        scores.update({key: stock_scores(inferencer, sized) for key, inferencer in stock.items()})
        sides = {key: (lambda m=model: m.predict(images[0])) for key, model in ours.items()}
        sides.update({key: (lambda inf=inf: inf.predict(images[0])) for key, inf in stock.items()})
        latency = interleaved_ms(sides, runs)
        eight = {key: (lambda m=model: m.predict(images, batch_size=8)) for key, model in ours.items()}
        notes = {}
        for key, inferencer in stock.items():
            fn, notes[key] = batch_of_eight(inferencer, images)
            if fn is not None:
                eight[key] = fn
        throughput = {key: 8000 / ms for key, ms in interleaved_ms(eight, max(5, runs // 5)).items()}
        for ours_key, stock_key, target, what in COMPARISONS:
            rows.append({
                "model": name, "stock": stock_key, "what": what, "target": target,
                "ours": f"{ours_key}={ours[ours_key].backend.precision}" if ours_key.endswith("auto") else ours_key,
                "iadbe_ms": latency[ours_key], "stock_ms": latency[stock_key],
                "iadbe_ips": throughput[ours_key], "stock_ips": throughput.get(stock_key),
                "stock_note": notes[stock_key], "speedup": latency[stock_key] / latency[ours_key],
                "iadbe_diff": float(np.abs(scores[ours_key] - reference).max()),
                "stock_diff": float(np.abs(scores[stock_key] - reference).max()),
            })
    return rows


def passed(row: dict) -> bool:
    return row["speedup"] >= row["target"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = measure(args.runs, args.threads)
    print(f"batch 1, 256 px, {args.threads} threads, median of {args.runs} interleaved calls; img/s at batch 8. "
          "diff = max |normalised score - IADBE f32 score| on 8 tire images at 256 px (0 = same scores)")
    print(f"{'model':<10} {'comparison':<21} {'IADBE side':<11} {'stock side':<32} {'IADBE ms':>8} {'stock ms':>8} "
          f"{'speedup':>8} {'target':>6} {'IADBE img/s':>11} {'stock img/s':>11} {'IADBE diff':>10} {'stock diff':>10}  result")
    for row in rows:
        stock_ips = f"{row['stock_ips']:.1f}" if row["stock_ips"] else "fails"
        print(f"{row['model']:<10} {row['what']:<21} {row['ours']:<11} {row['stock']:<32} {row['iadbe_ms']:8.1f} "
              f"{row['stock_ms']:8.1f} {row['speedup']:7.2f}x {row['target']:5.1f}x {row['iadbe_ips']:11.1f} "
              f"{stock_ips:>11} {row['iadbe_diff']:10.4f} {row['stock_diff']:10.4f}  {'PASS' if passed(row) else 'FAIL'}")
    for note in sorted({f"{row['model']} {row['stock']} at batch 8: {row['stock_note']}" for row in rows
                        if row["stock_note"]}):
        print(note)
    print("* anomalib's OpenVINOInferencer leaves the precision to OpenVINO, which picks bf16 on CPUs with "
          "AMX/AVX512-BF16 (this one) and f32 elsewhere.")


if __name__ == "__main__":
    main()
