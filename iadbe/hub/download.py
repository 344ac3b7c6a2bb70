"""Verified model downloads from the Hub into the standard HF cache.

* Downloads go through ``huggingface_hub.snapshot_download`` into the standard HF cache, pinned to a commit,
  with ``allow_patterns`` naming the model-directory files only (``iadbe.json``, ``weights.safetensors``,
  ``openvino/model.{xml,bin}``, ``README.md``): pickled checkpoints in the same folder are never fetched.
  Files listed in the manifest are sha256-checked; a bad file is deleted from the cache (blob and snapshot
  link) and :class:`~iadbe.hub.refs.ChecksumMismatchError` is raised.
* Offline (``HF_HUB_OFFLINE=1``, or the Hub does not answer within a few seconds) cached models load from the
  cache; uncached ones raise :class:`~iadbe.hub.refs.ModelNotCachedError` at once. A pinned model that is
  fully cached is loaded without any network call.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iadbe.errors import ModelFormatError
from iadbe.hub.refs import (
    COMMIT_RE,
    MODEL_FILES,
    PROBE_TIMEOUT_S,
    ChecksumMismatchError,
    HubError,
    HubRef,
    HubUnreachableError,
    ModelNotCachedError,
    cache_root,
    call_hub,
    endpoint,
    is_offline,
    parse_hub_ref,
    resolve_token,
)
from iadbe.manifest import REQUIRED_FILES, ManifestEntry
from iadbe.store import sha256_file

logger = logging.getLogger(__name__)


def _probe(ref: HubRef, token: str | None, timeout: float) -> str:
    """One quick request, no retries: the commit hash of ``ref``; raises HubUnreachableError within ``timeout``.

    A plain ``GET /api/{models|datasets}/OWNER/NAME[/revision/REV]`` (what ``HfApi.repo_info`` sends) with
    headers built here: huggingface_hub's own header builder fetches ``{ENDPOINT}/api/agent-harnesses`` on its
    first use in a process (up to 3 s more when the network hangs) unless telemetry is disabled.
    """
    from urllib.parse import quote

    from huggingface_hub import __version__ as hf_version
    from huggingface_hub.utils import get_session, hf_raise_for_status

    from iadbe import __version__

    url = f"{endpoint()}/api/{ref.repo_type}s/{ref.repo_id}"
    if ref.revision:
        url += f"/revision/{quote(ref.revision, safe='')}"
    headers = {"user-agent": f"iadbe/{__version__}; hf_hub/{hf_version}"}
    if token:
        headers["authorization"] = f"Bearer {token}"

    def request() -> Any:
        response = get_session().get(url, headers=headers, timeout=timeout)
        hf_raise_for_status(response)
        try:
            return response.json()
        except ValueError:  # not a Hub (a proxy page?): reported below
            return None

    info = call_hub(request, "look up", ref, token)
    sha = info.get("sha") if isinstance(info, dict) else None
    if not isinstance(sha, str) or not COMMIT_RE.fullmatch(sha):
        raise HubError(f"look up {ref.uri}: the Hub at {endpoint()} gave no commit hash; check HF_ENDPOINT")
    return sha


def _repo_cache(ref: HubRef, cache: Path) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=ref.repo_id, repo_type=ref.repo_type)


def cached_commit(ref: HubRef, cache: Path) -> str | None:
    if ref.pinned:
        return ref.revision
    ref_file = _repo_cache(ref, cache) / "refs" / (ref.revision or "main")
    try:
        commit = ref_file.read_text().strip()
    except OSError:
        return None
    return commit if COMMIT_RE.fullmatch(commit) else None


def _remember_ref(ref: HubRef, commit: str, cache: Path) -> None:
    """Record ``branch -> commit`` in the cache's ``refs/`` (as huggingface_hub does) for offline use."""
    ref_file = _repo_cache(ref, cache) / "refs" / (ref.revision or "main")
    try:
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref_file.with_name(f".{ref_file.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(commit)
        os.replace(tmp, ref_file)
    except OSError as err:  # a read-only cache still works online
        logger.warning("Could not record %s -> %s in the cache: %s", ref.uri, commit, err)


def fetch_snapshot(
    ref: HubRef,
    patterns: list[str],
    *,
    token: str | None,
    cache: Path,
    timeout: float,
    find_cached: Callable[[], Path | None],
    not_cached: Callable[[str], Exception],
) -> Path:
    """The snapshot folder of ``ref``: from the cache when pinned and complete, else downloaded, else cached."""
    from huggingface_hub import snapshot_download

    if ref.pinned and (local := find_cached()) is not None:
        return local
    if is_offline():
        reason = "offline mode is on (HF_HUB_OFFLINE=1)"
    else:
        try:
            commit = _probe(ref, token, timeout)
            folder = call_hub(
                lambda: snapshot_download(
                    ref.repo_id, repo_type=ref.repo_type, revision=commit, cache_dir=str(cache),
                    allow_patterns=patterns, token=token if token else False, etag_timeout=timeout,
                    endpoint=endpoint(), max_workers=4,
                ),
                "download", ref, token,
            )
            if not ref.pinned:
                _remember_ref(ref, commit, cache)
            return Path(folder)
        except HubUnreachableError as err:
            reason = str(err)
    local = find_cached()
    if local is None:
        raise not_cached(reason)
    logger.warning("Using the cached copy of %s: %s", ref.uri, reason)
    return local


def _evict(path: Path) -> None:
    """Delete a cached file: the snapshot link and the blob it points to."""
    try:
        if path.is_symlink():
            blob = Path(os.path.normpath(os.path.join(path.parent, os.readlink(path))))
            path.unlink()
            if blob.is_symlink() or blob.exists():
                blob.unlink()
        else:
            path.unlink(missing_ok=True)
    except OSError as err:
        logger.error("Could not delete the corrupt cached file %s: %s", path, err)


def file_pattern(path: str) -> str:
    """An fnmatch pattern matching exactly ``path``."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _model_names(files: dict[str, str] | None) -> list[str]:
    return list(files) if files else list(MODEL_FILES)


def _required(files: dict[str, str] | None) -> list[str]:
    return list(files) if files else list(REQUIRED_FILES)


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class _Target:
    ref: HubRef
    name: str
    files: dict[str, str] | None = None


def _as_target(source: ManifestEntry | HubRef | str) -> _Target:
    if isinstance(source, ManifestEntry):
        ref = HubRef(source.repo_id, source.path_in_repo, source.revision, source.repo_type)
        return _Target(ref, source.id, dict(source.files))
    ref = source if isinstance(source, HubRef) else parse_hub_ref(source)
    return _Target(ref, ref.uri)


def _model_dir(snapshot: Path, ref: HubRef) -> Path:
    return snapshot / ref.path_in_repo if ref.path_in_repo else snapshot


def _cached_snapshot(target: _Target, cache: Path) -> Path | None:
    commit = cached_commit(target.ref, cache)
    if commit is None:
        return None
    snapshot = _repo_cache(target.ref, cache) / "snapshots" / commit
    model_dir = _model_dir(snapshot, target.ref)
    if all((model_dir / name).is_file() for name in _required(target.files)):
        return snapshot
    return None


def _verify(model_dir: Path, target: _Target, *, evict: bool) -> Path:
    missing = [name for name in _required(target.files) if not (model_dir / name).is_file()]
    if missing:
        raise ModelFormatError(
            f"{target.name}: {', '.join(missing)} missing in {target.ref.repo_id}@{target.ref.revision or 'main'}"
            f" folder {target.ref.path_in_repo or '/'}; check the repo, the path and the revision"
        )
    checks = target.files
    if checks is None:  # no manifest: use the checksums the model directory lists about itself
        try:
            meta = json.loads((model_dir / "iadbe.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ModelFormatError(f"{target.name}: iadbe.json is not valid JSON ({err})") from None
        listed = meta.get("files") if isinstance(meta, dict) else None
        checks = {}
        for name, digest in (listed or {}).items():
            if name in MODEL_FILES and (model_dir / name).is_file():
                checks[name] = str(digest)
            elif name in MODEL_FILES:
                logger.warning("%s: %s is listed in iadbe.json but not in the repo", target.name, name)
    for name, expected in checks.items():
        path = model_dir / name
        actual = sha256_file(path)
        if actual != expected.lower():
            if evict:
                _evict(path)
            raise ChecksumMismatchError(name, expected, actual, source=target.name, evicted=evict)
    return model_dir


def download_model(
    source: ManifestEntry | HubRef | str,
    *,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    timeout: float | None = None,
) -> Path:
    """Download (or find in the cache) a published model and return its local model directory.

    Args:
        source: a manifest entry (pinned revision + sha256 of every file), an :class:`HubRef` or an
            ``hf://OWNER/NAME[/PATH]@REVISION`` string (then ``iadbe.json``'s own ``files`` checksums are checked).
        token: Hub token; default ``HF_TOKEN`` or the stored login.
        cache_dir: HF cache folder; default ``huggingface_hub.constants.HF_HUB_CACHE``.
        timeout: seconds to wait for the Hub before using the cache (default :data:`PROBE_TIMEOUT_S`).

    Returns:
        The folder holding ``iadbe.json`` (inside the HF cache snapshot; do not write into it).

    Raises:
        ChecksumMismatchError: a file does not match its sha256 (it was deleted from the cache).
        ModelNotCachedError: offline or the Hub is unreachable, and the model is not cached.
        HubError: the Hub refused (401 token, 404 repo not found or private, ...).
        ModelFormatError: the repo folder is not a model directory.

    Example:
        >>> entry = load_manifest(constants.MANIFEST_PATH).get("padim-resnet18-mvtec-bottle")
        >>> model_dir = download_model(entry)
    """
    target = _as_target(source)
    cache = cache_root(cache_dir)
    tok = resolve_token(token)
    names = _model_names(target.files)
    prefix = f"{target.ref.path_in_repo}/" if target.ref.path_in_repo else ""
    snapshot = fetch_snapshot(
        target.ref, [file_pattern(prefix + n) for n in names], token=tok, cache=cache,
        timeout=PROBE_TIMEOUT_S if timeout is None else timeout,
        find_cached=lambda: _cached_snapshot(target, cache),
        not_cached=lambda reason: ModelNotCachedError(target.name, cache, reason),
    )
    return _verify(_model_dir(snapshot, target.ref), target, evict=True)


def is_cached(source: ManifestEntry | HubRef | str, *, cache_dir: str | Path | None = None) -> bool:
    """True when the model's files are in the HF cache at its revision (no network, no checksum)."""
    from huggingface_hub import try_to_load_from_cache

    target = _as_target(source)
    cache = cache_root(cache_dir)
    revision = cached_commit(target.ref, cache)
    if revision is None:
        return False
    prefix = f"{target.ref.path_in_repo}/" if target.ref.path_in_repo else ""
    names = ["iadbe.json", *[n for n in _required(target.files) if n != "iadbe.json"]]
    return all(
        isinstance(try_to_load_from_cache(target.ref.repo_id, prefix + name, cache_dir=str(cache),
                                          revision=revision, repo_type=target.ref.repo_type), str)
        for name in names
    )


def download_file(uri: str, *, token: str | None = None, cache_dir: str | Path | None = None,
                  timeout: float | None = None) -> Path:
    """One file of a Hub repository, ``hf://OWNER/NAME/PATH/FILE[@REVISION]``, cache-first like models
    (offline it comes from the cache); returns its path in the HF cache (read only). Used for a YOLO's starting
    weights (``.safetensors`` only: nothing downloaded is unpickled).

    Raises:
        ModelNotCachedError: offline or unreachable, and the file is not cached.
        ModelFormatError: the reference names no file, or the repo has no such file.
    """
    ref = parse_hub_ref(uri)
    if not ref.path_in_repo:
        raise ModelFormatError(f"{uri}: name a file in the repository (hf://owner/repo/path/file.safetensors)")
    cache = cache_root(cache_dir)

    def cached() -> Path | None:
        commit = cached_commit(ref, cache)
        snapshot = _repo_cache(ref, cache) / "snapshots" / commit if commit else None
        return snapshot if snapshot is not None and (snapshot / ref.path_in_repo).is_file() else None

    snapshot = fetch_snapshot(
        ref, [file_pattern(ref.path_in_repo)], token=resolve_token(token), cache=cache,
        timeout=PROBE_TIMEOUT_S if timeout is None else timeout, find_cached=cached,
        not_cached=lambda reason: ModelNotCachedError(uri, cache, reason),
    )
    path = snapshot / ref.path_in_repo
    if not path.is_file():
        raise ModelFormatError(f"{uri}: no such file in {ref.repo_id}@{ref.revision or 'main'}")
    return path
