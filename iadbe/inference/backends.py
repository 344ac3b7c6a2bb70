"""Backends that run the inference graph on a float N x 3 x H x W batch: torch and OpenVINO.

Both satisfy :class:`Backend`; tests check that both give the same numbers.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from iadbe import constants
from iadbe.errors import ModelFormatError, SettingsError


@runtime_checkable
class Backend(Protocol):
    name: str
    device: str
    #: the precision the graph runs at: f32, bf16 or f16
    precision: str

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return raw (scores (N,), anomaly maps (N, h, w)) for a float32 batch in [0, 1]."""
        ...


class TorchBackend:
    """The torch graph on CPU or CUDA; ``precision`` f16/bf16 runs it under autocast (f32: as it is)."""

    name = "torch"

    def __init__(self, graph: Any, device: str = "cpu", precision: str | None = "f32") -> None:
        import torch

        self._torch = torch
        self.device = device
        self.precision = "f32" if precision in (None, "auto") else check_precision(precision)
        self._autocast = {"f16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        self.graph = graph.to(device).eval()
        if device == "cpu" and constants.CPU_THREADS > 0:
            torch.set_num_threads(constants.CPU_THREADS)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=self._autocast,
                                                    enabled=self._autocast is not None):
            tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            scores, maps = self.graph(tensor)
        return scores.float().cpu().numpy(), maps.float().cpu().numpy()


class OpenVINOBackend:
    """The exported IR, compiled once per (model file, device) and reused.

    ``precision`` is passed to the plugin as given (f32 unless asked: the CPU plugin otherwise picks bf16 on
    CPUs that have it, as anomalib's OpenVINOInferencer does, which moved normalised scores by up to 0.016 on
    tire). ``auto`` needs the model's export check (:mod:`iadbe.precision`), which ``load_model`` reads; here,
    without it, ``auto`` is f32. ``IADBE_OV_CACHE_DIR`` turns on OpenVINO's compiled-model cache
    (later loads 30 ms instead of 150 ms, at the cost of a copy of the model on disk). A compiled
    model is shared by threads; each call uses its own infer request, so concurrent requests never
    mix outputs.
    """

    name = "openvino"

    def __init__(self, xml: Path, device: str = "CPU", precision: str | None = None) -> None:
        import openvino as ov

        precision = check_precision(precision)
        precision = "f32" if precision == "auto" else precision
        if not Path(xml).is_file():
            raise ModelFormatError(f"{xml}: OpenVINO model missing; re-export with `iadbe export`")
        self.device = device
        self.precision = precision
        core = ov.Core()
        if _usable_cache_dir(constants.OV_CACHE_DIR):
            core.set_property({"CACHE_DIR": constants.OV_CACHE_DIR})
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if constants.CPU_THREADS > 0 and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = constants.CPU_THREADS
        try:
            self.compiled = core.compile_model(str(xml), device, config)
        except RuntimeError as error:
            raise ModelFormatError(f"{xml}: OpenVINO cannot load this model ({str(error).splitlines()[0]})") from None
        self._local = threading.local()

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = self._request()
        # share_inputs: OpenVINO reads the numpy buffer in place instead of copying it (the call is synchronous)
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True)
        scores = request.get_output_tensor(0).data.copy()
        maps = request.get_output_tensor(1).data.copy()
        return scores.reshape(len(batch)), maps.reshape(len(batch), *maps.shape[-2:])


def _usable_cache_dir(path: str) -> bool:
    """A compile cache that cannot be written is skipped (read-only home on a Space), never an error."""
    import os

    if not path:
        return False
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


PRECISIONS = constants.PRECISIONS


def check_precision(precision: str | None) -> str:
    """The inference precision asked for: ``precision``, else ``IADBE_OV_PRECISION``, else auto."""
    value = (precision or constants.OV_PRECISION).lower()
    if value not in PRECISIONS:
        raise SettingsError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """Whether torch sees a CUDA device; asked once per process. torch does not cache a count of 0 and
    asks NVML again each time (about 3 ms, dlopen included), which ``load_model`` paid on every app call."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None
