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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from iadbe import constants
from iadbe.errors import IADBEError, ModelFormatError, StoreError, UnsafeCheckpointError

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

    from safetensors import SafetensorError

    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state_dict.items()}
    try:
        save_file(tensors, str(path), metadata={"format": "pt", "producer": "iadbe"})
    except SafetensorError as error:
        # safetensors reports I/O failures as "... (os error 28)": turn them into the OSError they are
        found = re.search(r"os error (\d+)", str(error))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from None


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


#: Pickled weights a user may explicitly trust in a *local* model directory (instead of weights.safetensors).
TRUSTED_PICKLE_NAMES = ("weights.pt", "weights.pth", "weights.ckpt")


def pickled_weights(model_dir: Path) -> Path | None:
    """The pickled weights file of a local model directory without ``weights.safetensors``, if any."""
    if (model_dir / WEIGHTS_FILE).is_file():
        return None
    return next((model_dir / name for name in TRUSTED_PICKLE_NAMES if (model_dir / name).is_file()), None)


def load_trusted_pickle(path: Path) -> dict[str, Any]:
    """Unpickle a state dict the user explicitly trusts (this can run code from the file).

    Accepts a plain state dict or a Lightning checkpoint (``{"state_dict": {"model.<key>": ...}}``).
    """
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise ModelFormatError(f"{path}: cannot be read as a torch checkpoint ({type(error).__name__}: {error})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = {key.removeprefix("model."): value for key, value in data["state_dict"].items()}
    if not isinstance(data, dict) or not all(hasattr(v, "shape") for v in data.values()):
        raise ModelFormatError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return data


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


#: A staging folder whose writer cannot be identified counts as abandoned after this many seconds.
STALE_AFTER_S = 3600
#: Free space below which training refuses to start (a model directory is a few MB to a few hundred MB).
MIN_FREE_BYTES = 64 * 1024 * 1024
_PROBE_BYTES = 1024 * 1024
#: ``.partial-<pid>-<name>-<mkdtemp's 8 characters>`` (staging) or ``.partial-<pid>-<name>.old`` (backup).
_STAGING = re.compile(re.escape(_PARTIAL_PREFIX) + r"(?P<pid>\d+)-(?P<name>.+)(?:\.old|-[a-z0-9_]{8})$")


@contextlib.contextmanager
def staged_model_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; rename it to ``target`` only if the block succeeds.

    The folder is called ``.partial-<pid>-<name>-<random>``: listing skips it, and a later write (or the app's
    start) removes it once process ``pid`` is gone, e.g. after ``kill -9`` during training.

    Raises:
        StoreError: the store cannot be written (read-only, not a folder, disk full, file too large).
    """
    target = Path(target)
    clean_partials(target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        prefix = f"{_PARTIAL_PREFIX}{os.getpid()}-{target.name}-"
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    except OSError as error:
        raise _store_error(target.parent, error) from None
    try:
        yield staging
        _move_into_place(staging, target, overwrite)
    except IADBEError:
        raise
    except OSError as error:
        raise _store_error(target, error) from None
    except Exception as error:
        # OpenVINO and other writers report a full disk as e.g. "basic_ios::clear: iostream error": if the
        # folder no longer takes a small write, that is the real cause
        failure = _write_failure(staging)
        if failure is None:
            raise
        raise _store_error(target, failure) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    if not overwrite:
        raise StoreError(f"{target}: already exists; choose another --out or pass --overwrite")
    backup = target.with_name(f"{_PARTIAL_PREFIX}{os.getpid()}-{target.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    os.replace(target, backup)
    os.replace(staging, target)
    shutil.rmtree(backup, ignore_errors=True)


def _write_failure(folder: Path) -> OSError | None:
    """The OSError a 1 MB write into ``folder`` raises now (None when it succeeds)."""
    probe = folder / ".write-probe"
    try:
        with probe.open("wb") as handle:
            handle.write(bytes(_PROBE_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        return error
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


def check_writable(folder: Path | None = None) -> Path:
    """Fail fast, before a long training, when models cannot be written under ``folder`` (default: the store).

    Raises:
        StoreError: ``folder`` is a file, read-only, or its disk has less than ``MIN_FREE_BYTES`` free.
    """
    folder = Path(folder or constants.MODEL_STORE)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        failure = _write_failure(folder)
        if failure is not None:
            raise failure
        free = shutil.disk_usage(folder).free
    except OSError as error:
        raise _store_error(folder, error) from None
    if free < MIN_FREE_BYTES:
        raise StoreError(f"{folder}: only {free // 2**20} MB free on this disk; a model needs at least "
                         f"{MIN_FREE_BYTES // 2**20} MB. Free some space, or set IADBE_MODEL_STORE / --out elsewhere")
    return folder


def _store_error(path: Path, error: OSError) -> StoreError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"{path}: the disk is full; free some space and train again")
    if error.errno == errno.EFBIG:
        return StoreError(f"{path}: a file became too large for this file system or its limits (disk full?); "
                          "free some space or set IADBE_MODEL_STORE / --out elsewhere")
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"{path}: cannot write here (read-only or no permission); set IADBE_MODEL_STORE or --out")
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        return StoreError(f"{path}: a file is in the way where the model store needs a folder; "
                          "set IADBE_MODEL_STORE or --out to a folder")
    return StoreError(f"{path}: cannot write the model ({error.strerror or error})")


def list_store(store: Path | None = None) -> list[StoredModel]:
    """Complete model directories in the store (partial ones from crashed runs are skipped)."""
    root = Path(store or constants.MODEL_STORE)
    if not root.is_dir():
        return []
    return [model for child in sorted(root.iterdir()) if (model := stored_model(root, child.name)) is not None]


def stored_model(store: Path | None, name: str) -> StoredModel | None:
    """The complete model ``name`` of the store, as :func:`list_store` would list it; None when it would not
    (missing, partial, hidden, or a broken ``iadbe.json``). One folder read, not the whole store."""
    child = Path(store or constants.MODEL_STORE) / name
    if name.startswith((_PARTIAL_PREFIX, ".")) or not (child / CONFIG_FILE).is_file():
        return None
    with contextlib.suppress(ModelFormatError):
        return StoredModel(child, read_config(child))
    return None


def clean_partials(store: Path | None = None) -> int:
    """Remove leftovers of interrupted writes whose writer is gone; returns how many were removed.

    A staging folder of a running process (this one or another) is kept. When a crash happened between the
    two renames of an overwrite, the previous model (``.partial-<pid>-<name>.old``) is put back.
    """
    root = Path(store or constants.MODEL_STORE)
    removed = 0
    try:
        children = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        return 0  # unreadable store: whoever writes there next gets the real error
    for child in children:
        if not child.name.startswith(_PARTIAL_PREFIX) or not _abandoned(child):
            continue
        match = _STAGING.match(child.name)
        if child.name.endswith(".old") and match and not (root / match["name"]).exists():
            with contextlib.suppress(OSError):  # if the rename fails, the backup stays for a person to see
                os.replace(child, root / match["name"])
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed += 1
    return removed


def _abandoned(child: Path) -> bool:
    """True when the process that wrote ``child`` is gone (or, if unknown, it is older than STALE_AFTER_S)."""
    match = _STAGING.match(child.name)
    if match is not None:
        return not _process_alive(int(match["pid"]))
    try:
        return time.time() - child.stat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return _not_a_zombie(pid)


def _not_a_zombie(pid: int) -> bool:
    """A killed child that nobody waited for yet still answers ``kill(pid, 0)``; /proc tells (Linux)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rsplit(")", 1)[-1].split()[0] != "Z"
