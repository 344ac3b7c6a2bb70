"""Which inference precision a loaded model runs (issue 17): ``auto`` is the fastest precision the model's
export check kept (:mod:`iadbe.precision`, recorded in iadbe.json under ``"precision"``) where this machine
runs it natively, f32 otherwise; any other value is run as asked."""

from __future__ import annotations

import functools
from typing import Any

#: Lower precisions worth checking, per target, and the capability names OpenVINO's CPU plugin reports for them.
OPENVINO_CANDIDATES = {"bf16": "BF16", "f16": "FP16"}
#: Where the verdicts live in iadbe.json's ``"precision"``, per target.
OPENVINO_CPU, TORCH_CUDA = "openvino_cpu", "torch_cuda"


@functools.lru_cache(maxsize=1)
def native_openvino_precisions() -> tuple[str, ...]:
    """Lower precisions the OpenVINO CPU plugin runs natively on this machine (e.g. ``("bf16",)``)."""
    try:
        import openvino as ov

        capabilities = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - no OpenVINO, no CPU plugin: nothing lower than f32
        return ()
    return tuple(name for name, capability in OPENVINO_CANDIDATES.items() if capability in capabilities)


@functools.lru_cache(maxsize=1)
def native_cuda_precisions() -> tuple[str, ...]:
    """Autocast precisions the first CUDA device runs natively (f16 always; bf16 from Ampere on)."""
    from iadbe.inference.backends import cuda_available

    if not cuda_available():
        return ()
    import torch

    return ("f16", "bf16") if torch.cuda.is_bf16_supported() else ("f16",)


def resolve(requested: str, record: dict[str, Any] | None, target: str) -> str:
    """The precision to run: ``requested`` unless it is ``auto``, then the verdict of ``target``
    (:data:`OPENVINO_CPU` or :data:`TORCH_CUDA`) where this machine runs it natively, else f32."""
    if requested != "auto":
        return requested
    chosen = ((record or {}).get(target) or {}).get("auto", "f32")
    native = native_openvino_precisions() if target == OPENVINO_CPU else native_cuda_precisions()
    return chosen if chosen in native else "f32"
