"""The model directory format and the local model store.

A model directory holds ``iadbe.json``, ``weights.safetensors`` and ``openvino/model.{xml,bin}``
(see docs/ARCHITECTURE.md). Directories are assembled in a temporary sibling folder and renamed
into place, so a crash or cancel never leaves a half model where the store lists models.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from iadbe import constants
from iadbe.errors import ModelFormatError, StoreError, UnsafeCheckpointError

SCHEMA_VERSION = 1
CONFIG_FILE = "iadbe.json"
WEIGHTS_FILE = "weights.safetensors"
OPENVINO_XML = "openvino/model.xml"
OPENVINO_BIN = "openvino/model.bin"
_PARTIAL_PREFIX = ".partial-"
_PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".pkl", ".pickle", ".bin_pickle"}


@dataclass(frozen=True)
class StoredModel:
    """A model directory as listed by the store."""

    path: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.name)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def safe_name(name: str) -> str:
    """A folder name from user text: letters, digits, '-', '_' and '.', no leading dot."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
    return cleaned[:120]


def read_config(model_dir: Path) -> dict[str, Any]:
    """Parse and check ``iadbe.json`` of ``model_dir``."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        _refuse_pickles(Path(model_dir))
        raise ModelFormatError(f"{path}: missing; a model directory needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(meta, dict) or "detector" not in meta or "postprocess" not in meta:
        raise ModelFormatError(f"{path}: not an IADBE model config (keys 'detector' and 'postprocess' missing)")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelFormatError(f"{path}: schema version {version!r} is not supported (expected {SCHEMA_VERSION})")
    return meta


def _refuse_pickles(model_dir: Path) -> None:
    if model_dir.is_file() and model_dir.suffix.lower() in _PICKLE_SUFFIXES:
        raise UnsafeCheckpointError(
            f"{model_dir}: pickled checkpoints are not loaded (they can run arbitrary code); "
            "export the model with `iadbe train` / `iadbe export` to safetensors"
        )
    if model_dir.is_dir():
        pickles = [p.name for p in model_dir.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES]
        if pickles:
            raise UnsafeCheckpointError(
                f"{model_dir}: holds only pickled checkpoints ({', '.join(pickles)}), which IADBE does not "
                "unpickle; use a model directory with iadbe.json and weights.safetensors"
            )


def save_weights(state_dict: dict[str, Any], path: Path) -> None:
    """Write a state dict as safetensors (tensors made contiguous and unshared)."""
    from safetensors.torch import save_file

    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state_dict.items()}
    save_file(tensors, str(path), metadata={"format": "pt", "producer": "iadbe"})


def load_weights(path: Path) -> dict[str, Any]:
    """Read ``weights.safetensors``; a truncated or foreign file gives a clear error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelFormatError(f"{path}: weights file missing")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFormatError(f"{path}: not a valid safetensors file, truncated or corrupt ({error})") from None


def verify_files(model_dir: Path, meta: dict[str, Any]) -> None:
    """Check every file listed in ``meta['files']`` against its sha256 (tampering, truncation)."""
    for relative, expected in (meta.get("files") or {}).items():
        path = model_dir / relative
        if not path.is_file():
            raise ModelFormatError(f"{path}: listed in {CONFIG_FILE} but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelFormatError(
                f"{path}: checksum mismatch (expected sha256 {expected[:12]}..., found {actual[:12]}...); "
                "the file was modified or damaged"
            )


def write_config(model_dir: Path, meta: dict[str, Any]) -> None:
    files = {}
    for relative in (WEIGHTS_FILE, OPENVINO_XML, OPENVINO_BIN):
        if (model_dir / relative).is_file():
            files[relative] = sha256_file(model_dir / relative)
    meta = {**meta, "schema_version": SCHEMA_VERSION, "files": files}
    (model_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")


@contextlib.contextmanager
def staged_model_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; rename it to ``target`` only if the block succeeds."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_PARTIAL_PREFIX + target.name + "-", dir=target.parent))
    except OSError as error:
        raise _store_error(target.parent, error) from None
    try:
        yield staging
        if target.exists():
            if not overwrite:
                raise StoreError(f"{target}: already exists; choose another --out or pass --overwrite")
            backup = target.with_name(_PARTIAL_PREFIX + target.name + ".old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
            os.replace(staging, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, target)
    except OSError as error:
        raise _store_error(target, error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _store_error(path: Path, error: OSError) -> StoreError:
    if error.errno == errno.ENOSPC:
        return StoreError(f"{path}: the disk is full; free some space and train again")
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"{path}: cannot write here (read-only or no permission); set IADBE_MODEL_STORE or --out")
    return StoreError(f"{path}: cannot write the model ({error.strerror or error})")


def list_store(store: Path | None = None) -> list[StoredModel]:
    """Complete model directories in the store (partial ones from crashed runs are skipped)."""
    root = Path(store or constants.MODEL_STORE)
    if not root.is_dir():
        return []
    models = []
    for child in sorted(root.iterdir()):
        if child.name.startswith((_PARTIAL_PREFIX, ".")) or not (child / CONFIG_FILE).is_file():
            continue
        with contextlib.suppress(ModelFormatError):
            models.append(StoredModel(child, read_config(child)))
    return models


def clean_partials(store: Path | None = None) -> int:
    """Remove leftovers of interrupted writes; returns how many were removed."""
    root = Path(store or constants.MODEL_STORE)
    removed = 0
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(_PARTIAL_PREFIX):
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
    return removed
