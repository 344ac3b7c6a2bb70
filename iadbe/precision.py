"""The fastest inference precision that changes no decision (issue 17).

Lower precisions (bf16 on CPUs with AMX or AVX512-BF16; fp16/bf16 autocast on CUDA) are faster, and they move
scores a little. At export, each one the hardware runs natively is checked on the validation images against
f32: it is kept only if it flips no label there and moves no normalised score by more than
:data:`MAX_SCORE_CHANGE`. The verdict goes into ``iadbe.json`` under ``"precision"``; ``precision="auto"`` (the
default) runs the fastest kept one where this machine runs it natively, f32 otherwise, and ``f32`` is one flag
away (``--precision f32``, ``IADBE_OV_PRECISION=f32``). Which precision a load runs:
:mod:`iadbe.inference.precisions`.

The check is a measurement on the exporting machine (its CPU is recorded): another CPU with native bf16 rounds
in the same format but not bit for bit the same way.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np

from iadbe.inference.precisions import (
    OPENVINO_CPU,
    TORCH_CUDA,
    native_cuda_precisions,
    native_openvino_precisions,
)

#: Largest change of a normalised score (0.5 = threshold) a lower precision may cause on the validation images.
MAX_SCORE_CHANGE = 0.02


def cpu_name() -> str:
    try:
        import openvino as ov

        return str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # noqa: BLE001
        import platform

        return platform.processor() or platform.machine()


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, calibration: Any) -> dict[str, Any]:
    """Label flips and the largest normalised-score change of ``candidate`` raw image scores against f32's."""
    ref = calibration.normalize_scores(reference)
    low = calibration.normalize_scores(candidate)
    flips = int(np.count_nonzero((ref > 0.5) != (low > 0.5)))
    change = float(np.abs(ref - low).max()) if len(ref) else 0.0
    return {"label_flips": flips, "max_score_change": round(change, 6)}


def verdict(checks: dict[str, dict[str, Any]], f32_ms: float) -> str:
    """The fastest precision whose check passed (f32 when none did or none is faster)."""
    kept = {name: check["ms"] for name, check in checks.items() if check["kept"]}
    fastest = min(kept, key=kept.get, default=None)
    return fastest if fastest is not None and kept[fastest] < f32_ms else "f32"


def check_precisions(make_backend: Callable[[str], Any], candidates: Sequence[str], samples: Sequence[Any],
                     image_size: tuple[int, int], calibration: Any, *, device: str,
                     timing_rounds: int = 5) -> dict[str, Any]:
    """Check each of ``candidates`` against f32 on ``samples`` (the validation images) and time both.

    ``make_backend(precision)`` builds a backend (:mod:`iadbe.inference.backends`) at that precision.
    Returns the record stored in iadbe.json: per candidate its label flips, largest score change, median
    ms per image at batch 1 and whether it is kept, and ``auto``, the precision ``precision="auto"`` runs.
    """
    from iadbe.evaluation import run_backend
    from iadbe.images import load_image, to_batch

    reference_backend = make_backend("f32")
    reference = run_backend(reference_backend, samples, image_size)
    one = to_batch([load_image(samples[0].image)], image_size) if samples else None
    backends = {name: make_backend(name) for name in candidates}
    times = _interleaved_ms({"f32": reference_backend, **backends}, one, timing_rounds) if one is not None else {}
    checks: dict[str, dict[str, Any]] = {}
    for name, backend in backends.items():
        outputs = run_backend(backend, samples, image_size)
        check = compare_outputs(reference.scores, outputs.scores, calibration)
        check["ms"] = round(times.get(name, float("inf")), 3)
        check["kept"] = check["label_flips"] == 0 and check["max_score_change"] <= MAX_SCORE_CHANGE
        check["reason"] = _reason(check)
        checks[name] = check
    f32_ms = times.get("f32", 0.0)
    return {
        "device": device,
        "images": len(samples),
        "rule": f"no label flip and normalised scores within {MAX_SCORE_CHANGE} of f32 on the validation images",
        "f32_ms": round(f32_ms, 3),
        "candidates": checks,
        "auto": verdict(checks, f32_ms) if checks else "f32",
    }


def _reason(check: dict[str, Any]) -> str:
    if check["label_flips"]:
        return f"flips {check['label_flips']} validation label(s)"
    if check["max_score_change"] > MAX_SCORE_CHANGE:
        return f"moves a normalised score by {check['max_score_change']:.3f} (> {MAX_SCORE_CHANGE})"
    return "changes no validation label"


def _interleaved_ms(backends: dict[str, Any], batch: np.ndarray, rounds: int) -> dict[str, float]:
    """Median ms of one call per backend, in interleaved rounds so that all see the same machine load."""
    samples: dict[str, list[float]] = {name: [] for name in backends}
    for backend in backends.values():
        backend.run(batch)  # warm-up (first-call allocations)
    for _ in range(rounds):
        for name, backend in backends.items():
            began = time.perf_counter()
            backend.run(batch)
            samples[name].append(1000 * (time.perf_counter() - began))
    return {name: statistics.median(values) for name, values in samples.items()}


def check_export(xml: Any, samples: Sequence[Any], image_size: tuple[int, int], calibration: Any,
                 graph: Any = None) -> dict[str, Any]:
    """The precision record of a model just exported: OpenVINO on this CPU, and torch on CUDA when there is one."""
    from iadbe.inference.backends import OpenVINOBackend, TorchBackend

    record: dict[str, Any] = {}
    native = native_openvino_precisions()
    record[OPENVINO_CPU] = check_precisions(lambda p: OpenVINOBackend(xml, "CPU", p), native, samples, image_size,
                                            calibration, device=cpu_name())
    record[OPENVINO_CPU]["native"] = list(native)
    cuda = native_cuda_precisions()
    if graph is not None and cuda:
        import torch

        record[TORCH_CUDA] = check_precisions(lambda p: TorchBackend(graph, "cuda", p), cuda, samples, image_size,
                                              calibration, device=torch.cuda.get_device_name(0))
        record[TORCH_CUDA]["native"] = list(cuda)
    return record


def describe(record: dict[str, Any] | None) -> str:
    """One line per target of a model's precision record, e.g. for ``iadbe train`` and ``iadbe export``."""
    if not record:
        return "precision: not checked (auto runs f32)"
    lines = []
    for target, check in record.items():
        parts = [f"{name} {'kept' if c['kept'] else 'refused'} ({c['reason']}; max score change "
                 f"{c['max_score_change']:.4f}, {check['f32_ms'] / c['ms']:.2f}x f32's speed)"
                 for name, c in check["candidates"].items() if c["ms"]]
        checked = "; ".join(parts) or "no lower precision runs natively here"
        lines.append(f"precision on {target} ({check['device']}, {check['images']} validation images): {checked}; "
                     f"auto runs {check['auto']}")
    return "\n".join(lines)


def describe_model(model_dir: Any) -> str:
    """:func:`describe` of a stored model's record."""
    from iadbe import store

    return describe(store.read_config(model_dir).get("precision"))
