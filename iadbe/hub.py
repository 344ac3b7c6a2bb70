"""The Hugging Face Hub side: ``hf://`` references, verified downloads, one-commit pushes, datasets.

* Downloads go through ``huggingface_hub.snapshot_download`` into the standard HF cache, pinned to a commit,
  with ``allow_patterns`` naming the model-directory files only (``iadbe.json``, ``weights.safetensors``,
  ``openvino/model.{xml,bin}``, ``README.md``): pickled checkpoints in the same folder are never fetched.
  Files listed in the manifest are sha256-checked; a bad file is deleted from the cache (blob and snapshot
  link) and :class:`ChecksumMismatchError` is raised.
* Offline (``HF_HUB_OFFLINE=1``, or the Hub does not answer within a few seconds) cached models load from the
  cache; uncached ones raise :class:`ModelNotCachedError` at once. A pinned model that is fully cached is
  loaded without any network call.
* The endpoint is read from ``huggingface_hub.constants.ENDPOINT`` at call time and passed explicitly.
* Tokens come from the ``token`` argument, else ``HF_TOKEN`` / ``hf auth login`` (``huggingface_hub.get_token``).
  Every huggingface_hub error is translated here into :class:`HubError` (or a subclass) whose message is
  redacted, says what to do, and carries no link to the original exception (whose request holds the
  ``Authorization`` header).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iadbe import constants
from iadbe.errors import DatasetError, IADBEError, ModelFormatError, ModelUnavailableError, SettingsError
from iadbe.manifest import REQUIRED_FILES, ManifestEntry

logger = logging.getLogger(__name__)

#: Files of a model directory that are downloaded (never anything else: no pickles).
MODEL_FILES = ("iadbe.json", "weights.safetensors", "openvino/model.xml", "openvino/model.bin", "README.md")
#: Files of a model directory that are pushed (plus the generated README.md).
PUSH_FILES = ("iadbe.json", "weights.safetensors", "openvino/model.xml", "openvino/model.bin")
#: Suffixes never downloaded nor pushed.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".pkl", ".pickle")
#: What a dataset download fetches: images, masks, label/split files and small metadata.
DATASET_PATTERNS = tuple(
    f"*.{ext}" for base in ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "txt", "csv", "json", "yaml",
                            "yml", "md")
    for ext in (base, base.upper())
)
#: Seconds the first request may take before the Hub counts as unreachable (then the cache is used).
PROBE_TIMEOUT_S = 3.0

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SPECIAL_REF = re.compile(r"^refs/(?:convert/[\w.-]+|pr/\d+)")
_TYPE_PREFIXES = {"models": "model", "datasets": "dataset"}


# --------------------------------------------------------------------------- errors
class HubError(IADBEError, RuntimeError):
    """A Hub request failed; the message says what to do and never contains a token."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class HubUnreachableError(HubError):
    """The Hub did not answer (network down, timeout, 5xx, offline mode)."""


class ChecksumMismatchError(ModelFormatError):
    """A downloaded (or local) file does not have the sha256 the manifest or ``iadbe.json`` lists."""

    def __init__(self, file: str, expected: str, actual: str, *, source: str, evicted: bool = False):
        self.file, self.expected, self.actual, self.source, self.evicted = file, expected, actual, source, evicted
        done = " The bad file was deleted from the cache; retry later or report it to the repo owner." if evicted else ""
        super().__init__(
            f"Checksum mismatch for {file} of {source}: expected sha256 {expected}, got {actual}. "
            f"The file is corrupt or was changed without a new revision.{done}"
        )


class ModelNotCachedError(ModelUnavailableError):
    """The model is not in the local cache and the Hub cannot be reached (offline)."""

    def __init__(self, model_id: str, cache_dir: Path, reason: str):
        self.model_id, self.cache_dir, self.reason = model_id, cache_dir, reason
        super().__init__(
            f"Model {model_id!r} is not in the local Hugging Face cache ({cache_dir}) and cannot be downloaded "
            f"now: {reason}. Connect to the network once and run `iadbe models --download {model_id}` (or load "
            "it once while online); it then loads offline."
        )


# --------------------------------------------------------------------------- references
@dataclass(frozen=True)
class HubRef:
    """A place on the Hub: repo, folder inside it, revision (``None`` = default branch)."""

    repo_id: str
    path_in_repo: str = ""
    revision: str | None = None
    repo_type: str = "model"

    @property
    def pinned(self) -> bool:
        """True when the revision is a full commit hash (immutable)."""
        return bool(self.revision and _COMMIT.fullmatch(self.revision))

    @property
    def uri(self) -> str:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        path = f"/{self.path_in_repo}" if self.path_in_repo else ""
        rev = f"@{self.revision}" if self.revision else ""
        return f"hf://{prefix}{self.repo_id}{path}{rev}"

    def __str__(self) -> str:
        return self.uri


def _clean_path(path: str, what: str = "path in repo") -> str:
    path = path.strip("/")
    if not path:
        return ""
    if "\\" in path or any(p in ("", ".", "..") for p in path.split("/")):
        raise SettingsError(f"invalid {what} {path!r}: use a relative folder like 'padim/bottle'")
    return path


def _check_repo_id(repo_id: str) -> str:
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise SettingsError(f"invalid repo id {repo_id!r}: expected OWNER/NAME (letters, digits, '-', '_', '.')")
    return repo_id


def parse_hub_ref(ref: str) -> HubRef:
    """Parse ``hf://[datasets/]OWNER/NAME[/PATH/IN/REPO][@REVISION]``.

    The revision comes last (``hf://owner/repo/padim/bottle@<commit>``); huggingface_hub's own order
    ``hf://owner/repo@<rev>/path`` is accepted too when nothing follows NAME before the ``@``.

    Raises:
        SettingsError: not an ``hf://`` reference of a model or dataset repo.

    Example:
        >>> parse_hub_ref("hf://datasets/me/parts@main")
        HubRef(repo_id='me/parts', path_in_repo='', revision='main', repo_type='dataset')
    """
    grammar = "expected hf://[datasets/]OWNER/NAME[/PATH]@REVISION"
    if not isinstance(ref, str) or not ref.startswith("hf://"):
        raise SettingsError(f"not a Hub reference: {ref!r}; {grammar}")
    body = ref[len("hf://"):]
    repo_type = "model"
    head = body.split("/", 1)[0]
    if head in _TYPE_PREFIXES:
        repo_type, body = _TYPE_PREFIXES[head], body[len(head) + 1:]
    elif head in ("spaces", "kernels", "buckets"):
        raise SettingsError(f"{ref!r}: only model and dataset repos are supported; {grammar}")
    main, at, revision = body.partition("@")
    segments = main.strip("/").split("/")
    if len(segments) < 2 or (at and not revision):
        raise SettingsError(f"invalid Hub reference {ref!r}; {grammar}")
    repo_id = _check_repo_id("/".join(segments[:2]))
    path = "/".join(segments[2:])
    if at and not path and "/" in revision:  # huggingface_hub order: @REVISION/PATH
        special = _SPECIAL_REF.match(revision)
        if special:
            revision, path = special.group(0), revision[special.end():]
        else:
            revision, _, path = revision.partition("/")
    if at and (not revision or re.search(r"\s|\.\.|[~^:?*\[\\]", revision)):
        raise SettingsError(f"invalid revision {revision!r} in {ref!r}")
    return HubRef(repo_id, _clean_path(path), revision or None, repo_type)


# --------------------------------------------------------------------------- tokens
_TOKEN_PATTERNS = (
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), "hf_***"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\",;)]+"), r"\1***"),
    (re.compile(r"(?i)\b(authorization['\"]?\s*[:=]\s*['\"]?)(?!bearer\s)[^\s'\",;)]+"), r"\1***"),
)


def redact(text: str, token: str | Iterable[str | None] | None = None) -> str:
    """``text`` with ``token`` (one or several), Hub-looking tokens and bearer credentials replaced by ``***``."""
    tokens = [token] if isinstance(token, str) or token is None else list(token)
    for value in sorted({t for t in tokens if t and len(t) >= 4}, key=len, reverse=True):
        text = text.replace(value, "***")
    for pattern, replacement in _TOKEN_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _resolve_token(token: str | None) -> str | None:
    """The token to use: the argument, else ``HF_TOKEN`` / the stored login; ``None`` when anonymous."""
    if token:
        return token
    from huggingface_hub import get_token

    return get_token() or None


def _known_tokens(token: str | None) -> list[str | None]:
    from huggingface_hub import get_token

    try:
        stored = get_token()
    except Exception:  # noqa: BLE001 - a broken login must not hide the real error
        stored = None
    return [token, stored]


# --------------------------------------------------------------------------- huggingface_hub boundary
def _endpoint() -> str:
    from huggingface_hub import constants as hf_constants

    return hf_constants.ENDPOINT.rstrip("/")


def _offline() -> bool:
    from huggingface_hub import constants as hf_constants

    return bool(constants.HF_HUB_OFFLINE or hf_constants.HF_HUB_OFFLINE)


def _cache_dir(cache_dir: str | Path | None) -> Path:
    from huggingface_hub import constants as hf_constants

    return Path(cache_dir or hf_constants.HF_HUB_CACHE).expanduser()


def _translate(err: Exception, action: str, ref: HubRef, token: str | None) -> Exception | None:
    """Our exception for a huggingface_hub/httpx error (None: not a Hub error, re-raise as is)."""
    import httpx2
    from huggingface_hub import errors as hf_errors

    tokens = _known_tokens(token)
    where = ref.uri
    if isinstance(err, hf_errors.OfflineModeIsEnabled):
        return HubUnreachableError(f"{action} {where}: offline mode is on (HF_HUB_OFFLINE=1)")
    if isinstance(err, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError, httpx2.ProxyError)):
        return HubUnreachableError(
            f"{action} {where}: the Hub at {_endpoint()} cannot be reached ({type(err).__name__}: "
            f"{redact(str(err), tokens) or 'no answer'}); check the network, HF_ENDPOINT, or set HF_HUB_OFFLINE=1 "
            "to use cached models only"
        )
    if isinstance(err, hf_errors.LocalEntryNotFoundError):
        return HubUnreachableError(f"{action} {where}: {redact(str(err).splitlines()[0], tokens)}")
    if isinstance(err, hf_errors.FileMetadataError):
        return HubError(f"{action} {where}: {_endpoint()} does not answer like a Hugging Face Hub "
                        f"({redact(str(err), tokens)}); check HF_ENDPOINT")
    if isinstance(err, hf_errors.HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        detail = redact(str(err).splitlines()[0], tokens)
        if err.server_message:
            detail += f"; server says: {redact(err.server_message, tokens)}"
        rev = ref.revision or "main"
        if status is not None and (status >= 500 or status == 429):
            return HubUnreachableError(f"{action} {where}: the Hub is unavailable (HTTP {status}); try again later "
                                       f"[{detail}]", status=status)
        if isinstance(err, hf_errors.GatedRepoError):
            advice = (f"{ref.repo_id} is gated: request access on its Hub page, then use a token of that account "
                      "(set HF_TOKEN or log in with `hf auth login`)")
        elif isinstance(err, hf_errors.RepositoryNotFoundError):
            advice = (f"repo not found or private: check the repo id {ref.repo_id!r} and type ({ref.repo_type}); "
                      "if it is private, set HF_TOKEN or log in (`hf auth login`) with a token that can read it")
        elif isinstance(err, hf_errors.RevisionNotFoundError):
            advice = f"revision {rev!r} not found in {ref.repo_id}: check the commit hash or branch"
        elif isinstance(err, hf_errors.RemoteEntryNotFoundError):
            advice = f"file not found in {ref.repo_id}@{rev}: check the path in the repo"
        elif status == 401:
            advice = "token missing or invalid: set HF_TOKEN or log in with `hf auth login`"
        elif status == 403:
            advice = (f"the token has no permission for this on {ref.repo_id}: use a token with write access "
                      "(set HF_TOKEN or log in with `hf auth login`)")
        elif status == 412:
            advice = "the branch moved during the operation: retry"
        else:
            advice = "the Hub refused the request"
        return HubError(f"{action} {where}: {advice} [HTTP {status}: {detail}]", status=status)
    if type(err).__module__.split(".")[0] in ("huggingface_hub", "httpx2", "httpx"):
        return HubError(f"{action} {where}: {type(err).__name__}: {redact(str(err), tokens)}")
    return None


def _call(fn: Callable[[], Any], action: str, ref: HubRef, token: str | None) -> Any:
    """Run one huggingface_hub call; translate its errors at this boundary.

    The new exception is raised *outside* the ``except`` block so that it has neither ``__cause__`` nor
    ``__context__``: the original error keeps the request (with its ``Authorization`` header) and must not
    travel up with ours (``raise ... from None`` alone would still keep it in ``__context__``).
    """
    failure: Exception | None = None
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - translated below, re-raised untouched if not a Hub error
        failure = _translate(err, action, ref, token)
        if failure is None:
            raise
    raise failure from None


def _api(token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=_endpoint(), token=token if token else False)


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

    url = f"{_endpoint()}/api/{ref.repo_type}s/{ref.repo_id}"
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

    info = _call(request, "look up", ref, token)
    sha = info.get("sha") if isinstance(info, dict) else None
    if not isinstance(sha, str) or not _COMMIT.fullmatch(sha):
        raise HubError(f"look up {ref.uri}: the Hub at {_endpoint()} gave no commit hash; check HF_ENDPOINT")
    return sha


def _repo_cache(ref: HubRef, cache: Path) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=ref.repo_id, repo_type=ref.repo_type)


def _cached_commit(ref: HubRef, cache: Path) -> str | None:
    if ref.pinned:
        return ref.revision
    ref_file = _repo_cache(ref, cache) / "refs" / (ref.revision or "main")
    try:
        commit = ref_file.read_text().strip()
    except OSError:
        return None
    return commit if _COMMIT.fullmatch(commit) else None


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


def _fetch(
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
    if _offline():
        reason = "offline mode is on (HF_HUB_OFFLINE=1)"
    else:
        try:
            commit = _probe(ref, token, timeout)
            folder = _call(
                lambda: snapshot_download(
                    ref.repo_id, repo_type=ref.repo_type, revision=commit, cache_dir=str(cache),
                    allow_patterns=patterns, token=token if token else False, etag_timeout=timeout,
                    endpoint=_endpoint(), max_workers=4,
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


# --------------------------------------------------------------------------- files
def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def _pattern(path: str) -> str:
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
    commit = _cached_commit(target.ref, cache)
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
    cache = _cache_dir(cache_dir)
    tok = _resolve_token(token)
    names = _model_names(target.files)
    prefix = f"{target.ref.path_in_repo}/" if target.ref.path_in_repo else ""
    snapshot = _fetch(
        target.ref, [_pattern(prefix + n) for n in names], token=tok, cache=cache,
        timeout=PROBE_TIMEOUT_S if timeout is None else timeout,
        find_cached=lambda: _cached_snapshot(target, cache),
        not_cached=lambda reason: ModelNotCachedError(target.name, cache, reason),
    )
    return _verify(_model_dir(snapshot, target.ref), target, evict=True)


def is_cached(source: ManifestEntry | HubRef | str, *, cache_dir: str | Path | None = None) -> bool:
    """True when the model's files are in the HF cache at its revision (no network, no checksum)."""
    from huggingface_hub import try_to_load_from_cache

    target = _as_target(source)
    cache = _cache_dir(cache_dir)
    revision = _cached_commit(target.ref, cache)
    if revision is None:
        return False
    prefix = f"{target.ref.path_in_repo}/" if target.ref.path_in_repo else ""
    names = ["iadbe.json", *[n for n in _required(target.files) if n != "iadbe.json"]]
    return all(
        isinstance(try_to_load_from_cache(target.ref.repo_id, prefix + name, cache_dir=str(cache),
                                          revision=revision, repo_type=target.ref.repo_type), str)
        for name in names
    )


# --------------------------------------------------------------------------- datasets
def download_dataset(
    ref: HubRef | str,
    *,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    timeout: float | None = None,
) -> Path:
    """Download a dataset repo (``hf://datasets/OWNER/NAME[/PATH][@REVISION]``) into the HF cache.

    ``token``: a token, ``None`` for ``HF_TOKEN`` / the stored login, ``False`` for none at all (a public
    app downloading for a visitor must not read with the server's own token).

    Only images, masks, label/split text files and small metadata are fetched (:data:`DATASET_PATTERNS`).

    Returns:
        The local folder (the snapshot, or its ``PATH`` sub-folder), e.g. ``good/``, ``defect/``, ``masks/``.

    Raises:
        DatasetError: not a dataset reference, nothing downloaded, or offline and not cached.
        HubError: the Hub refused (token, repo not found or private, ...).
    """
    from huggingface_hub import snapshot_download

    hub_ref = ref if isinstance(ref, HubRef) else parse_hub_ref(ref)
    if hub_ref.repo_type != "dataset":
        raise DatasetError(f"{hub_ref.uri} is not a dataset: use hf://datasets/OWNER/NAME[@REVISION]")
    cache = _cache_dir(cache_dir)
    tok = None if token is False else _resolve_token(token or None)
    prefix = f"{hub_ref.path_in_repo}/" if hub_ref.path_in_repo else ""
    patterns = [_pattern(prefix) + p for p in DATASET_PATTERNS]

    def find_cached() -> Path | None:
        commit = _cached_commit(hub_ref, cache)
        if commit is None:
            return None
        try:
            return Path(snapshot_download(hub_ref.repo_id, repo_type="dataset", revision=commit,
                                          cache_dir=str(cache), allow_patterns=patterns, local_files_only=True))
        except Exception:  # noqa: BLE001 - not (completely) cached
            return None

    def not_cached(reason: str) -> Exception:
        return DatasetError(
            f"Dataset {hub_ref.uri} is not in the local Hugging Face cache ({cache}) and cannot be downloaded now: "
            f"{reason}. Connect to the network once to download it."
        )

    snapshot = _fetch(hub_ref, patterns, token=tok, cache=cache,
                      timeout=PROBE_TIMEOUT_S if timeout is None else timeout,
                      find_cached=find_cached, not_cached=not_cached)
    folder = snapshot / hub_ref.path_in_repo if hub_ref.path_in_repo else snapshot
    if not folder.is_dir() or not any(p.is_file() for p in folder.rglob("*")):
        raise DatasetError(f"{hub_ref.uri}: no image or metadata files at this path and revision")
    return folder


# --------------------------------------------------------------------------- push
@dataclass(frozen=True)
class PushResult:
    """What :func:`push_model` published: one commit holding every file."""

    repo_id: str
    revision: str
    path_in_repo: str
    files: dict[str, str]  # path relative to the model directory -> sha256
    url: str
    manifest_entry: ManifestEntry | None = field(default=None, compare=False)

    @property
    def hf_ref(self) -> str:
        """``hf://OWNER/NAME[/PATH]@COMMIT``: load it with ``iadbe.load_model``."""
        return HubRef(self.repo_id, self.path_in_repo, self.revision).uri


def default_entry_id(repo_id: str, path_in_repo: str = "") -> str:
    """Manifest id of a pushed model: ``owner-name[-path]`` as a slug."""
    raw = f"{repo_id}/{path_in_repo}".lower()
    return re.sub(r"[^a-z0-9]+", "-", raw).strip("-")


def _read_meta(model_dir: Path) -> dict[str, Any]:
    try:
        meta = json.loads((model_dir / "iadbe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFormatError(f"{model_dir / 'iadbe.json'} is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{model_dir / 'iadbe.json'} must hold a JSON object")
    return meta


def _entry_from_meta(meta: dict[str, Any], repo_id: str, path_in_repo: str, revision: str,
                     files: dict[str, str], entry_id: str | None, display_name: str | None,
                     description: str | None) -> ManifestEntry:
    from pydantic import ValidationError

    from iadbe.model_card import finite_metrics, model_license

    dataset = meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {"name": meta.get("dataset")}
    category = dataset.get("category") or dataset.get("name")
    data = {
        "id": entry_id or default_entry_id(repo_id, path_in_repo),
        "display_name": display_name or meta.get("name") or f"{meta.get('model')} {category}",
        "model": meta.get("model"),
        "backbone": meta.get("backbone"),
        "dataset": dataset.get("name"),
        "category": category,
        "repo_id": repo_id,
        "path_in_repo": path_in_repo,
        "revision": revision,
        "files": files,
        "image_size": meta.get("image_size"),
        "metrics": finite_metrics(meta),
        "license": model_license(meta),
        "description": description,
    }
    try:
        return ManifestEntry.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ModelFormatError(f"cannot describe this model in the manifest ({problems}); check iadbe.json") from None


def push_model(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    path_in_repo: str = "",
    token: str | None = None,
    manifest_path: str | Path | None = None,
    commit_message: str | None = None,
    entry_id: str | None = None,
    display_name: str | None = None,
    description: str | None = None,
    known_models: Iterable[str] | None = None,
) -> PushResult:
    """Publish a model directory to the Hub in ONE commit, then (optionally) record it in the manifest.

    The commit holds ``iadbe.json``, ``weights.safetensors``, ``openvino/model.{xml,bin}`` (when present) and a
    generated model card ``README.md``, under ``path_in_repo``. Pickled checkpoints are never uploaded. The
    manifest entry (pinned to the new commit, with the sha256 of each file) is written only after the commit
    succeeded, atomically: an interrupted push leaves the manifest as it was.

    Args:
        model_dir: the local model directory (docs/ARCHITECTURE.md).
        repo_id: ``OWNER/NAME``; created when missing (``private`` applies only then).
        path_in_repo: folder in the repo ("" = repo root), e.g. ``padim/bottle``.
        token: write token; default ``HF_TOKEN`` or the stored login.
        manifest_path: manifest to upsert the entry into (id ``entry_id`` or :func:`default_entry_id`).
        known_models: registry names the entry's ``model`` must be in (``None``: not checked).

    Raises:
        ModelFormatError: not a model directory (``iadbe.json`` / ``weights.safetensors`` missing, checksum of a
            local file differs from ``iadbe.json``, metadata incomplete for the manifest).
        HubError: no token, token refused, repo owned by someone else, Hub unreachable...
        ManifestError: the existing manifest is invalid (checked before pushing).
    """
    from huggingface_hub import CommitOperationAdd

    from iadbe.manifest import load_manifest, upsert_entry
    from iadbe.model_card import build_model_card

    model_dir = Path(model_dir)
    repo_id = _check_repo_id(repo_id)
    path_in_repo = _clean_path(path_in_repo)
    ref = HubRef(repo_id, path_in_repo)
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelFormatError(f"{model_dir} is not a model directory: {', '.join(missing)} missing; train or "
                               "export a model first (layout in docs/ARCHITECTURE.md)")
    openvino = [(model_dir / n).is_file() for n in ("openvino/model.xml", "openvino/model.bin")]
    if any(openvino) and not all(openvino):
        raise ModelFormatError(f"{model_dir}: openvino/model.xml and openvino/model.bin must both exist; re-export")
    meta = _read_meta(model_dir)
    names = [name for name in PUSH_FILES if (model_dir / name).is_file()]
    skipped = sorted(p.name for p in model_dir.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if skipped:
        logger.info("Not uploading pickled files %s (IADBE publishes safetensors and OpenVINO only)", skipped)

    files = {name: sha256_file(model_dir / name) for name in names}
    listed = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    for name, expected in listed.items():
        if name in files and files[name] != str(expected).lower():
            raise ChecksumMismatchError(name, str(expected), files[name], source=str(model_dir))
    card = str(build_model_card(meta, repo_id=repo_id, path_in_repo=path_in_repo)).encode("utf-8")
    files["README.md"] = hashlib.sha256(card).hexdigest()

    draft = None
    if manifest_path is not None:  # fail before pushing when the entry or the manifest would be invalid
        draft = _entry_from_meta(meta, repo_id, path_in_repo, "0" * 40, files, entry_id, display_name, description)
        if Path(manifest_path).exists():
            load_manifest(manifest_path, known_models=known_models)
        if known_models is not None and draft.model.lower() not in {m.lower() for m in known_models}:
            raise ModelFormatError(f"model {draft.model!r} of {model_dir} is not a registered detector")

    tok = _resolve_token(token)
    if not tok:
        raise HubError("pushing needs a token with write access: set HF_TOKEN or log in with `hf auth login`",
                       status=401)
    api = _api(tok)
    _call(lambda: api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"), "create repo", ref, tok)
    prefix = f"{path_in_repo}/" if path_in_repo else ""
    operations = [CommitOperationAdd(path_in_repo=prefix + name, path_or_fileobj=str(model_dir / name))
                  for name in names]
    operations.append(CommitOperationAdd(path_in_repo=prefix + "README.md", path_or_fileobj=card))
    message = commit_message or f"Upload {meta.get('name') or meta.get('model', 'model')} with iadbe"
    info = _call(lambda: api.create_commit(repo_id, operations, commit_message=message, repo_type="model"),
                 "push to", ref, tok)
    revision = str(info.oid)
    if not _COMMIT.fullmatch(revision):
        raise HubError(f"push to {ref.uri}: the Hub answered no commit hash ({revision!r}); check HF_ENDPOINT")
    logger.info("Pushed %d files to %s@%s", len(files), repo_id, revision)

    entry = None
    if draft is not None and manifest_path is not None:
        entry = ManifestEntry.model_validate({**draft.model_dump(), "revision": revision})
        upsert_entry(manifest_path, entry, known_models=known_models)
    url = f"{_endpoint()}/{repo_id}/tree/{revision}" + (f"/{path_in_repo}" if path_in_repo else "")
    return PushResult(repo_id, revision, path_in_repo, files, url, entry)
