"""``load_model(ref, backend="auto")``: a model directory, a manifest id or a Hub reference.

The model is rebuilt from ``iadbe.json`` (class and init arguments, no backbone download) and
``weights.safetensors``; nothing downloaded is ever unpickled. Loaded models stay in a small
LRU cache so switching between models costs no reload.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from iadbe import constants
from iadbe.errors import ModelFormatError, SettingsError, UnsafeCheckpointError
from iadbe.inference.predictor import LoadedModel

BACKENDS = constants.BACKENDS


class _Loading:
    """One load in progress: the threads asking for the same key wait for it instead of loading again."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.model: LoadedModel | None = None
        self.error: BaseException | None = None


class ModelCache:
    """Thread-safe LRU of loaded models keyed by (directory, config mtime, backend, device).

    The lock guards the dictionary only, never a load: a slow load (a Hub download, an OpenVINO compile)
    holds up only the requests for that same model, which wait for it and share its result; every other
    model keeps answering (``bench/cache_latency.py``).
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._items: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._loading: dict[tuple, _Loading] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_load(self, key: tuple, load: Any) -> LoadedModel:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            pending = self._loading.get(key)
            owner = pending is None
            if owner:
                pending = self._loading[key] = _Loading()
                self.misses += 1
            else:
                self.hits += 1
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.model
        try:
            model = load()
        except BaseException as error:
            pending.error = error
            with self._lock:
                del self._loading[key]
            pending.done.set()
            raise
        with self._lock:
            self._items[key] = model
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            del self._loading[key]
        pending.model = model
        pending.done.set()
        return model

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = ModelCache(constants.MODEL_CACHE_SIZE)


def load_model(ref: str | Path, backend: str = "auto", *, token: str | None = None,
               trust_local_pickle: bool = False, precision: str | None = None) -> LoadedModel:
    """Load a stored model for prediction.

    Args:
        ref: a model directory, a manifest id, a model name in the local store, or
            ``hf://owner/repo[/path]@revision``.
        backend: ``auto`` (torch on CUDA if a GPU is present, else OpenVINO on CPU, else torch
            on CPU), ``torch`` or ``openvino``.
        trust_local_pickle: load pickled weights (``weights.pt``/``.pth``/``.ckpt`` in place of
            ``weights.safetensors``) from a LOCAL model directory. Unpickling can run code from the file:
            only for files you made or trust. Never applies to downloads (Hub, manifest).
    Raises:
        ModelFormatError: missing, corrupt or mismatching files (the message names the file).
        UnsafeCheckpointError: pickled weights without ``trust_local_pickle``.
    """
    from iadbe import store

    if backend not in BACKENDS:
        raise SettingsError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if trust_local_pickle and not Path(str(ref)).expanduser().is_dir():
        raise SettingsError("trust_local_pickle applies to a local model directory only, never to a download")
    model_dir = resolve_model_dir(ref, token=token)
    config_path = model_dir / "iadbe.json"
    if not config_path.is_file():
        store.read_config(model_dir)  # raises the right error (pickled checkpoint, not a model directory)
    pickled = store.pickled_weights(model_dir)
    if pickled is not None and not trust_local_pickle:
        raise UnsafeCheckpointError(
            f"{pickled}: pickled weights are not loaded (unpickling can run code from the file). If you made "
            "this file or trust it, load it with trust_local_pickle=True (CLI: --trust-local-pickle), or "
            "re-save it as weights.safetensors"
        )
    kind, device = choose_backend(backend, model_dir)
    from iadbe.inference.backends import check_precision

    precision = check_precision(precision)  # "auto" is resolved from the model's export check in _load
    key = (str(model_dir.resolve()), config_path.stat().st_mtime_ns, kind, device, pickled is not None, precision)
    return CACHE.get_or_load(key, lambda: _load(model_dir, kind, device, trust_local_pickle, precision))


def resolve_model_dir(ref: str | Path, token: str | None = None) -> Path:
    """Turn any model reference into a local model directory (downloading through the Hub if needed)."""
    text = str(ref)
    if text.startswith("hf://"):
        from iadbe import hub

        return hub.download_model(text, token=token)
    path = Path(text).expanduser()
    if path.exists():
        return path
    stored = constants.MODEL_STORE / text
    if (stored / "iadbe.json").is_file():
        return stored
    from iadbe.catalog import find_manifest_entry

    entry = find_manifest_entry(text)
    if entry is not None:
        from iadbe import hub

        return hub.download_model(entry, token=token)
    raise ModelFormatError(
        f"{text}: not a model directory, a model in the local store ({constants.MODEL_STORE}), "
        "a manifest id or an hf:// reference; `iadbe models` lists what is available"
    )


def choose_backend(backend: str, model_dir: Path) -> tuple[str, str]:
    from iadbe.inference.backends import cuda_available, openvino_available

    has_ir = (model_dir / "openvino" / "model.xml").is_file()
    if backend == "torch":
        return "torch", "cuda" if cuda_available() else "cpu"
    if backend == "openvino":
        if not has_ir:
            raise ModelFormatError(f"{model_dir}: has no openvino/model.xml; run `iadbe export --model-dir {model_dir}`")
        return "openvino", "CPU"
    if cuda_available():
        return "torch", "cuda"
    if has_ir and openvino_available():
        return "openvino", "CPU"
    return "torch", "cpu"


def _load(model_dir: Path, kind: str, device: str, trust_pickle: bool = False,
          precision: str | None = None) -> LoadedModel:
    from iadbe import store
    from iadbe.metrics import Calibration
    from iadbe.models import DetectorConfig

    meta = store.read_config(model_dir)
    store.verify_files(model_dir, meta)
    try:
        config = DetectorConfig.from_dict(meta["detector"])
        calibration = Calibration.from_dict(meta["postprocess"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFormatError(f"{model_dir / store.CONFIG_FILE}: incomplete model config ({error})") from None
    from iadbe.inference import precisions

    # "auto" -> the export check's verdict for this target where this machine runs it natively (torch on a CPU:
    # no CUDA precision is native, so f32); any other precision as asked
    target = precisions.OPENVINO_CPU if kind == "openvino" else precisions.TORCH_CUDA
    chosen = precisions.resolve(precision or "auto", meta.get("precision"), target)
    if kind == "openvino":
        from iadbe.inference.backends import OpenVINOBackend

        runner: Any = OpenVINOBackend(model_dir / "openvino" / "model.xml", device, chosen)
    else:
        from iadbe.graph import rebuild_graph
        from iadbe.inference.backends import TorchBackend

        runner = TorchBackend(rebuild_graph(model_dir, config, trust_pickle=trust_pickle), device, chosen)
    return LoadedModel(model_dir=model_dir, meta=meta, config=config, calibration=calibration, backend=runner)
