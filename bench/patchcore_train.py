"""PatchCore training time at the study's defaults (Lite0, 256 px, coreset 10 %): IADBE's fast coreset,
IADBE's exact greedy and stock anomalib, side by side in one run, with image/pixel AUROC and F1.

    python bench/patchcore_train.py [--dataset mvtec3d --category tire] [--images 200] [--fraction 0.03]
                                    [--quality-images 60] [--skip-quality]
    python bench/patchcore_train.py --thousand [--fraction 0.003]

Timing (at ``--images``): one real training with the fast coreset (``iadbe.training.train``, the time it
records, which includes the feature pass); then, on the same patch embedding, each method's selection:
the fast one in full, the two sequential ones for ``--fraction`` of their greedy steps, scaled linearly
(each of their steps costs the same: one pass over all patches). A method's training time is the fast
training's time minus the fast selection plus its own selection.

Quality (at ``--quality-images``, default 60 so that the sequential methods finish in minutes): whole
trainings per method, same seed, same subset; image/pixel AUROC and F1 at the calibrated threshold, and
each memory bank's covering radius over the embedding (smaller is better). Up to 512 images at 256 px the
fast and exact greedy pick the same bank (both select on anomalib's projection), so their rows agree;
``--quality-seeds K`` repeats each training with the coreset's random draws seeded 0..K-1 and prints each
metric's spread over the seeds (docs/benchmark/patchcore_coreset; ``--json`` keeps the rows for
bench/patchcore_quality_table.py).

``--thousand``: a 1,000-image training at the defaults (target: at most 300 s of training, peak memory
under 4 GB). shared/data has no category that large, so the training set is a seeded 1,000 of the real
normal training images of capsules, juice_bottle, transistor and tire together (validated and tested on
capsules' splits): more varied patches than one category's, which makes the coreset's work no easier.
The training runs in a child process, so that its peak resident memory is its own; the bench prints
training time and CPU time (both phases: feature pass, coreset selection) against the target, and the
peak against 4 GB. The exact greedy's selection on the same patches is timed over ``--fraction`` of its
steps and scaled linearly, as above.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patchcore_quality_table import METRICS, table as quality_table  # noqa: E402 (bench/, beside this file)

TARGET_S = 60.0
THOUSAND_TARGET_S = 300.0
THOUSAND_MEMORY_GB = 4.0
#: the real categories pooled for the 1,000-image training set: (dataset kind, folder, category)
THOUSAND_SOURCES = (("visa", "visa", "capsules"), ("mvtec", "mvtec_loco", "juice_bottle"),
                    ("mvtec", "mvtec_ad", "transistor"), ("mvtec3d", "mvtec_3d", "tire"))
LAYOUT_FOLDERS = {"mvtec3d": "mvtec_3d", "mvtec": "mvtec_ad", "visa": "visa"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mvtec3d", choices=sorted([*LAYOUT_FOLDERS, "folder"]))
    parser.add_argument("--category", default="tire", help="ignored for --dataset folder")
    parser.add_argument("--root", help="the dataset's folder (default: its layout's folder in shared/data)")
    parser.add_argument("--images", type=int, default=200, help="training images for the timing")
    parser.add_argument("--fraction", type=float, default=0.03, help="share of the sequential greedy steps timed")
    parser.add_argument("--quality-images", type=int, default=60, help="training images for the quality runs")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--thousand", action="store_true", help="the 1,000-image training (see the docstring)")
    parser.add_argument("--thousand-images", type=int, default=1000, help="training images of --thousand")
    parser.add_argument("--thousand-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quality-methods", nargs="+", default=["fast", "exact", "anomalib"],
                        choices=["fast", "exact", "anomalib", "sampled"],
                        help="anomalib's selection equals the exact greedy's (same projection, same draws); "
                             "'sampled': the fast method from a random --sample-share of the patches, as it "
                             "selects above coreset_max_patches")
    parser.add_argument("--sample-share", type=float, default=0.4,
                        help="share of the patches 'sampled' selects from")
    parser.add_argument("--quality-seeds", type=int, default=1,
                        help="trainings per method, the coreset's random draws (projection, first centre) "
                             "seeded 0, 1, ...; everything else the same")
    parser.add_argument("--json", type=Path, help="write the quality rows here")
    return parser.parse_args(argv)


def _root(args: argparse.Namespace) -> Path:
    from iadbe import constants

    if args.root:
        if not Path(args.root).is_dir():
            raise SystemExit(f"no dataset folder at {args.root}")
        return Path(args.root)
    root = constants.SHARED_DATA / LAYOUT_FOLDERS[args.dataset]
    if not (root / args.category).is_dir():
        raise SystemExit(f"real data not found at {root / args.category} (set IADBE_SHARED_DATA)")
    return root


def _category(args: argparse.Namespace) -> str | None:
    return None if args.dataset == "folder" else args.category


def _label(args: argparse.Namespace) -> str:
    return "/".join(Path(args.root).resolve().parts[-2:]) if args.dataset == "folder" else f"{args.dataset}/{args.category}"


@contextlib.contextmanager
def _coreset_draws_seeded(seed: int):
    """Seed only the coreset selection's random draws (torch's and numpy's global generators, which
    anomalib's projection and the first centre use), restoring both afterwards."""
    import numpy as np
    import torch

    from iadbe.models import coreset

    original = coreset.select_coreset

    def seeded(*args, **kwargs):
        state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            try:
                return original(*args, **kwargs)
            finally:
                np.random.set_state(state)

    coreset.select_coreset = seeded
    try:
        yield
    finally:
        coreset.select_coreset = original


def _quiet() -> None:
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "anomalib"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _train(args: argparse.Namespace, images: int, method: str, out: Path, max_patches: int | None = None) -> object:
    from iadbe.training import train

    overrides: dict = {"coreset_method": method}
    if method == "sampled":
        overrides = {"coreset_method": "fast", "coreset_max_patches": max_patches}
    _quiet()
    with contextlib.redirect_stderr(io.StringIO()):  # anomalib's own tqdm bar over the greedy steps
        return train("patchcore", args.dataset, _root(args), category=_category(args),
                     backbone="tf_efficientnet_lite0", image_size=256, max_train_images=images, export=False,
                     out=out, seed=0, overrides=overrides)


def patch_embedding(args: argparse.Namespace, images: int) -> "torch.Tensor":
    """PatchCore's patch embedding of the same seeded training subset that ``train`` uses."""
    import torch

    from iadbe.data import load_dataset
    from iadbe.data.training_set import make_train_loader
    from iadbe.models import create_detector, resolve_config
    from iadbe.training import _subset

    config = resolve_config("patchcore", "tf_efficientnet_lite0", 256)
    module = create_detector(config)
    samples = _subset(load_dataset(args.dataset, _root(args), _category(args), seed=0).train, images, 0)
    model = module.model.train()
    with torch.no_grad():
        for batch in make_train_loader(samples, config.image_size, config.train_batch_size, seed=0):
            model(module.pre_processor(batch.image))
    return torch.vstack(model.embedding_store)


def _stock_steps(embedding: "torch.Tensor", features: "torch.Tensor", steps: int) -> list[int]:
    """anomalib's KCenterGreedy loop (its sample_coreset), for ``steps`` steps (bench/coreset.py's)."""
    from coreset import stock_greedy

    return stock_greedy(embedding, features, steps)


def measure_time(args: argparse.Namespace) -> dict:
    """Training time per method at ``args.images`` (s), the fast training's metrics, and the parts."""
    import torch

    from iadbe.models.coreset import k_center_greedy, project_like_anomalib, select_coreset

    with tempfile.TemporaryDirectory() as tmp:
        fast_run = _train(args, args.images, "fast", Path(tmp) / "fast")
    embedding = patch_embedding(args, args.images)
    size = int(embedding.shape[0] * 0.1)
    steps = max(2, int(size * args.fraction))
    torch.manual_seed(0)
    start = time.perf_counter()
    select_coreset(embedding, size, "fast")
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    features = project_like_anomalib(embedding)
    project_s = time.perf_counter() - start
    start = time.perf_counter()
    k_center_greedy(features, steps, 0)
    exact_s = project_s + (time.perf_counter() - start) * size / steps
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        _stock_steps(embedding, features, steps)
    stock_s = project_s + (time.perf_counter() - start) * size / steps
    other = fast_run.training_time_s - fast_s  # feature pass and Lightning, the same for every method
    return {"patches": int(embedding.shape[0]), "dims": int(embedding.shape[1]), "size": size, "steps": steps,
            "fast_train_s": fast_run.training_time_s, "fast_metrics": fast_run.metrics, "other_s": other,
            "selection_s": {"fast": fast_s, "exact": exact_s, "anomalib": stock_s},
            "train_s": {"fast": fast_run.training_time_s, "exact": other + exact_s, "anomalib": other + stock_s}}


def measure_quality(args: argparse.Namespace) -> list[dict]:
    """Whole trainings per method at ``args.quality_images``: metrics, covering radius, fit time."""
    import torch

    from iadbe.models.coreset import covering_radius
    from iadbe.store import load_weights

    embedding = patch_embedding(args, args.quality_images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.quality_methods:
            for seed in range(args.quality_seeds):
                limit = int(args.sample_share * len(embedding)) if method == "sampled" else None
                with _coreset_draws_seeded(seed):
                    result = _train(args, args.quality_images, method, Path(tmp) / f"{method}{seed}", limit)
                bank = load_weights(result.model_dir / "weights.safetensors")["memory_bank"]
                # the radius over the embedding and the bank together is the radius over the embedding
                points = torch.cat([embedding, bank])
                radius = covering_radius(points, list(range(len(embedding), len(points))))
                rows.append({"method": method, "seed": seed, "metrics": result.metrics,
                             "train_s": result.training_time_s, "radius": radius, "bank": int(bank.shape[0])})
                print_quality_row(rows[-1], flush=True)
    return rows


def thousand_splits(images: int = 1000) -> "DatasetSplits":  # noqa: F821 (iadbe.data's, imported lazily)
    """A seeded ``images`` of the pooled real categories' normal training images, with capsules' val and test."""
    import dataclasses

    from iadbe import constants
    from iadbe.data import load_dataset
    from iadbe.training import _subset

    loaded = [load_dataset(kind, constants.SHARED_DATA / folder, category, seed=0)
              for kind, folder, category in THOUSAND_SOURCES]
    pool = [sample for splits in loaded for sample in splits.train]
    if len(pool) < images:
        raise SystemExit(f"only {len(pool)} real training images in {THOUSAND_SOURCES}")
    names = ", ".join(category for _, _, category in THOUSAND_SOURCES)
    return dataclasses.replace(loaded[0], name="pooled", category=None, train=_subset(pool, images, 0),
                               notes=[f"bench: {images} training images pooled from {names}"])


def _thousand_child(args: argparse.Namespace) -> None:
    """One 1,000-image training at the defaults; prints a JSON line with its times, phases and memory."""
    import json
    import resource

    from iadbe.benchmark.worker import peak_rss_mb  # this process's own peak (not ru_maxrss: see there)
    from iadbe.training import train

    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    marks: dict[str, tuple[float, float]] = {}

    def progress(fraction: float, message: str) -> None:
        now = (time.perf_counter(), cpu())
        if message.startswith("epoch 1/") and "start" not in marks:
            marks["start"] = now  # after the first batch: the feature pass is under way
        elif message.startswith("fitting the model (memory bank /"):
            marks["features"] = now
        elif message.startswith("calibrating"):
            marks["fitted"] = now

    splits = thousand_splits(args.thousand_images)
    _quiet()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        result = train("patchcore", "folder", splits.root, splits=splits, backbone="tf_efficientnet_lite0",
                       image_size=256, export=False, out=Path(tmp) / "model", seed=0, progress=progress)
    (s0, c0), (s1, c1), (s2, c2) = marks["start"], marks["features"], marks["fitted"]
    print(json.dumps({"train_s": result.training_time_s, "images": result.meta["train_images"],
                      "coreset_method": result.meta["detector"]["extra"]["coreset_method"],
                      "coreset_max_patches": result.meta["detector"]["extra"].get("coreset_max_patches"),
                      "features_s": s1 - s0, "features_cpu_s": c1 - c0, "selection_s": s2 - s1,
                      "selection_cpu_s": c2 - c1, "metrics": result.metrics,
                      "peak_gb": peak_rss_mb() * 1024 * 1024 / 1e9}))


def measure_thousand(args: argparse.Namespace) -> dict:
    """The 1,000-image training in a child process; its peak resident memory; load before and after."""
    import json
    import os
    import subprocess

    load = os.getloadavg()[0]
    child = subprocess.run([sys.executable, __file__, "--thousand-child", "--thousand-images", str(args.thousand_images)],
                           capture_output=True, text=True, check=False)
    if child.returncode:
        raise SystemExit(f"the 1,000-image training failed:\n{child.stderr[-3000:]}")
    row = json.loads(child.stdout.strip().splitlines()[-1])
    row["load"] = (load, os.getloadavg()[0])
    return row


def print_thousand(row: dict) -> None:
    m = row["metrics"]
    print(f"PatchCore at the defaults (Lite0, 256 px, coreset 10 %, coreset_method {row['coreset_method']!r}, "
          f"coreset_max_patches {row['coreset_max_patches']}), "
          f"{row['images']} pooled real training images; load average {row['load'][0]:.1f} -> {row['load'][1]:.1f} "
          "on 2 cores")
    print(f"{'':<26} {'wall s':>8} {'CPU s':>8}")
    print(f"{'feature pass (from batch 2)':<26} {row['features_s']:8.1f} {row['features_cpu_s']:8.1f}")
    print(f"{'coreset selection':<26} {row['selection_s']:8.1f} {row['selection_cpu_s']:8.1f}")
    print(f"{'training (recorded)':<26} {row['train_s']:8.1f}")
    cpu_s = row["features_cpu_s"] + row["selection_cpu_s"]
    print(f"target <= {THOUSAND_TARGET_S:.0f} s: wall {row['train_s']:.1f} s (ratio {THOUSAND_TARGET_S / row['train_s']:.2f}), "
          f"CPU {cpu_s:.1f} s (ratio {THOUSAND_TARGET_S / cpu_s:.2f}; CPU s <= target means it fits even on one "
          f"free core): {'PASS' if row['train_s'] <= THOUSAND_TARGET_S else 'FAIL'} by wall time")
    print(f"peak resident memory {row['peak_gb']:.2f} GB vs {THOUSAND_MEMORY_GB:.0f} GB (ratio "
          f"{THOUSAND_MEMORY_GB / row['peak_gb']:.2f}): {'PASS' if row['peak_gb'] < THOUSAND_MEMORY_GB else 'FAIL'}")
    print(f"capsules test set: image AUROC {100 * m['image_AUROC']:.1f}, pixel AUROC {100 * m['pixel_AUROC']:.1f}")


def main() -> None:
    args = parse_args()
    if args.thousand_child:
        _thousand_child(args)
        return
    if args.thousand:
        print_thousand(measure_thousand(args))
        return
    if not args.skip_timing:
        print_timing(args, measure_time(args))
    if args.skip_quality:
        return
    print(f"\nquality, whole trainings on {_label(args)}, {args.quality_images} images (same subset and "
          f"training seed; coreset draws seeded 0..{args.quality_seeds - 1}):")
    print(QUALITY_HEADER)
    rows = measure_quality(args)
    if args.quality_seeds > 1:
        print("\n" + quality_table([{"dataset": _label(args), "rows": rows}]))
    if args.json:
        args.json.write_text(json.dumps({"dataset": _label(args), "images": args.quality_images, "rows": rows},
                                        indent=1))


QUALITY_METRICS = tuple(key for key, _ in METRICS)
QUALITY_HEADER = (f"{'method':<10} {'seed':>4} {'img AUROC':>9} {'img F1':>7} {'px AUROC':>8} {'px F1':>6} "
                  f"{'radius':>8} {'train s':>8}")


def print_quality_row(row: dict, flush: bool = False) -> None:
    m = row["metrics"]
    print(f"{row['method']:<10} {row['seed']:>4} " + " ".join(
        f"{100 * m[key]:{width}.2f}" for key, width in zip(QUALITY_METRICS, (9, 7, 8, 6)))
        + f" {row['radius']:8.3f} {row['train_s']:8.1f}", flush=flush)


def print_timing(args: argparse.Namespace, timing: dict) -> None:
    print(f"PatchCore, Lite0 blocks.2+4, 256 px, coreset 10 %: {_label(args)}, {args.images} images "
          f"= {timing['patches']} patches x {timing['dims']} dims -> {timing['size']} centres")
    print(f"sequential methods: {timing['steps']} of {timing['size']} greedy steps timed, scaled linearly")
    print(f"{'method':<24} {'training s':>10} {'selection s':>12}")
    for method, label in (("fast", "IADBE fast (default)"), ("exact", "IADBE exact greedy"),
                          ("anomalib", "stock anomalib")):
        print(f"{label:<24} {timing['train_s'][method]:10.1f} {timing['selection_s'][method]:12.1f}")
    fast = timing["train_s"]["fast"]
    print(f"target <= {TARGET_S:.0f} s for the fast training: {'PASS' if fast <= TARGET_S else 'FAIL'} ({fast:.1f} s); "
          f"image AUROC {100 * timing['fast_metrics']['image_AUROC']:.1f}, "
          f"pixel AUROC {100 * timing['fast_metrics']['pixel_AUROC']:.1f}")


if __name__ == "__main__":
    main()
