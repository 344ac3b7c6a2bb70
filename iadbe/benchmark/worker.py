"""One benchmark run in its own process: ``python -m iadbe.benchmark.worker SPEC.json RECORD.json``.

Trains (``iadbe.training.train``: validation-only thresholds, the whole test set scored, OpenVINO
export), measures per-image inference time through both backends, and writes the run's record.
The parent (:mod:`iadbe.benchmark.runner`) records a crash, a kill or an out-of-memory itself.
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from iadbe.benchmark.runs import RECORD_SCHEMA, RunSpec, write_record


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far in MiB; None where the OS does not tell.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own memory. Not
    ``getrusage``'s ``ru_maxrss``: the kernel carries it over from the forking parent through ``exec``, so a
    worker started by a 5 GB process reported 5 GB whatever it used itself (bench/patchcore_train.py's
    1,000-image child said 5.3 GB; it peaked at 2.6-3.0)."""
    hwm = linux_high_water_kib()
    if hwm is not None:
        return round(hwm / 1024, 1)
    try:
        import resource  # POSIX only
    except ImportError:
        return _windows_peak_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB; macOS: bytes
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def linux_high_water_kib(pid: int | str = "self") -> int | None:
    """``VmHWM`` of process ``pid`` (this one by default) in KiB, from Linux's /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _windows_peak_mb() -> float | None:
    """PeakWorkingSetSize of this process (Windows' psapi), or None elsewhere."""
    try:
        import ctypes
        from ctypes import wintypes

        class Counters(ctypes.Structure):
            _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                        ("PeakWorkingSetSize", ctypes.c_size_t), ("WorkingSetSize", ctypes.c_size_t),
                        ("QuotaPeakPagedPoolUsage", ctypes.c_size_t), ("QuotaPagedPoolUsage", ctypes.c_size_t),
                        ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t), ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
                        ("PagefileUsage", ctypes.c_size_t), ("PeakPagefileUsage", ctypes.c_size_t)]

        counters = Counters()
        counters.cb = ctypes.sizeof(counters)
        process = ctypes.windll.kernel32.GetCurrentProcess()  # type: ignore[attr-defined]
        if not ctypes.windll.psapi.GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb):  # type: ignore[attr-defined]
            return None
        return round(counters.PeakWorkingSetSize / (1024 * 1024), 1)
    except (ImportError, AttributeError, OSError):
        return None


def time_inference(model_dir: Path, images: Sequence[Path], backend: str, warmup: int = 2) -> dict[str, Any]:
    """Median per-image latency (batch 1, preprocessing to score) of one backend on ``images``."""
    from iadbe.inference import load_model

    model = load_model(model_dir, backend=backend)
    for image in images[:warmup]:
        model.predict(image)
    times = []
    for image in images:
        started = time.perf_counter()
        model.predict(image)
        times.append(1000 * (time.perf_counter() - started))
    return {"median_ms": round(statistics.median(times), 2), "runs": len(times), "device": model.device}


def per_category_metrics(outputs: Any, calibration: Any, segmentation: bool,
                         ranges: dict[str, tuple[int, int]]) -> dict[str, dict[str, float]]:
    """Metrics of each category's slice of a combined test set (unified mode)."""
    from iadbe.evaluation import Outputs, score_outputs

    found = {}
    for category, (start, stop) in ranges.items():
        part = Outputs(scores=outputs.scores[start:stop], maps=outputs.maps[start:stop],
                       labels=outputs.labels[start:stop],
                       masks=None if outputs.masks is None else outputs.masks[start:stop],
                       paths=outputs.paths[start:stop])
        found[category] = score_outputs(part, calibration, segmentation)
    return found


def combined_splits(spec: RunSpec) -> tuple[Any, dict[str, tuple[int, int]]]:
    """One DatasetSplits over every category of ``spec.test_categories`` (train, val, test concatenated)."""
    from dataclasses import replace

    from iadbe.data import load_dataset

    parts = [load_dataset(spec.dataset, spec.root, category, seed=spec.seed) for category in spec.test_categories]
    ranges, start = {}, 0
    for category, part in zip(spec.test_categories, parts):
        ranges[category] = (start, start + len(part.test))
        start += len(part.test)
    first = parts[0]
    combined = replace(first, category="all", train=[s for p in parts for s in p.train],
                       val=[s for p in parts for s in p.val], test=[s for p in parts for s in p.test],
                       val_source=" + ".join(sorted({p.val_source for p in parts})),
                       notes=[note for p in parts for note in p.notes], defect_share=pooled_defect_share(parts))
    return combined, ranges


def pooled_defect_share(parts: Sequence[Any]) -> float | None:
    """The defect share of several categories' sources together, weighted by their real validation defects."""
    from iadbe.data.samples import SYNTHETIC_TYPE

    known = [(sum(s.is_anomalous and s.defect_type != SYNTHETIC_TYPE for s in p.val), p.defect_share)
             for p in parts if p.defect_share]
    defects = sum(count for count, _ in known)
    return defects / sum(count / share for count, share in known) if defects else None


def kfold_splits(spec: RunSpec) -> Any:
    """The fold's splits for the track of ``spec.model`` (supervised or anomaly detector)."""
    from iadbe.benchmark.kfold import fold_splits
    from iadbe.data import load_dataset
    from iadbe.models import get_spec

    loaded = load_dataset(spec.dataset, spec.root, spec.category, seed=spec.seed)
    fold = fold_splits(loaded, spec.fold, spec.folds, spec.seed, spec.max_train_images)
    return fold.for_track(get_spec(spec.model).supervised)


def run(spec: RunSpec, work: Path) -> dict[str, Any]:
    """Do the run and return its record (``status`` ok)."""
    from iadbe.data import load_dataset
    from iadbe.evaluation import evaluate_model_dir
    from iadbe.inference import load_model
    from iadbe.models import get_spec
    from iadbe.training import library_versions, machine_info, train

    started = time.perf_counter()
    splits, ranges = (combined_splits(spec) if spec.mode == "unified" else (None, {}))
    max_train_images = spec.max_train_images
    if spec.mode == "kfold":
        splits, max_train_images = kfold_splits(spec), None  # the fold's normals are already the subset
    train_category = None if spec.mode == "unified" else spec.category
    result = train(spec.model, spec.dataset, spec.root, category=train_category, backbone=spec.backbone,
                   image_size=spec.image_size, max_epochs=spec.max_epochs, seed=spec.seed, out=work / "model",
                   overwrite=True, max_train_images=max_train_images, max_train_minutes=spec.max_train_minutes,
                   overrides=dict(spec.overrides) or None, splits=splits)
    record: dict[str, Any] = {
        "schema": RECORD_SCHEMA, "run_id": spec.run_id, "status": "ok", "spec": spec.to_dict(),
        "model": result.meta["model"], "backbone": result.meta.get("backbone"), "dataset": spec.dataset,
        "category": spec.category, "seed": spec.seed, "mode": spec.mode,
        "config": result.meta["detector"], "metrics": result.metrics,
        "test_counts": result.meta.get("test_counts"), "train_images": result.meta.get("train_images"),
        "validation": result.meta.get("validation"), "training_time_s": round(result.training_time_s, 3),
        "epochs_trained": result.meta.get("epochs_trained"), "max_train_minutes": spec.max_train_minutes,
        "train_defects": result.meta.get("train_defects"), "fit": result.meta.get("fit"),
        "fold": spec.fold if spec.mode == "kfold" else None, "folds": spec.folds if spec.mode == "kfold" else None,
        "supervised": get_spec(result.meta["model"]).supervised,
        "thresholds": {key: (result.meta.get("calibration") or {}).get(key)
                       for key in ("rule", "false_alarm_rate", "pixel_false_alarm_rate", "defect_share")},
    }
    if spec.mode == "kfold":  # which images this fold tested, and which it trained on
        record["tested_images"] = [str(s.image) for s in splits.test]
        record["trained_images"] = sorted(str(s.image) for s in splits.train)
    model = load_model(result.model_dir, backend="torch")
    if spec.mode == "unified":
        record["per_category"] = per_category_metrics(result.test_outputs, model.calibration,
                                                      model.config.segmentation, ranges)
    elif spec.mode == "one_to_all":
        record["per_category"] = {
            category: (result.metrics if category == spec.category else
                       evaluate_model_dir(result.model_dir, spec.dataset, spec.root, category, backend="torch").metrics)
            for category in spec.test_categories}
    images = [Path(s.image) for s in (splits or load_dataset(spec.dataset, spec.root, spec.category,
                                                              seed=spec.seed)).test[: spec.timing_images]]
    record["inference_ms"] = {backend: time_inference(result.model_dir, images, backend)
                              for backend in ("torch", "openvino")}
    record["peak_rss_mb"] = peak_rss_mb()
    record["wall_time_s"] = round(time.perf_counter() - started, 3)
    record["versions"] = library_versions()
    record["machine"] = machine_info()
    record["python"] = platform.python_version()
    return record


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m iadbe.benchmark.worker SPEC.json RECORD.json", file=sys.stderr)
        return 2
    spec = RunSpec.from_dict(json.loads(Path(args[0]).read_text(encoding="utf-8")))
    work = Path(tempfile.mkdtemp(prefix=f"iadbe-bench-{spec.run_id}-"))
    try:
        record = run(spec, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_record(Path(args[1]), record)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
