"""Hub references and the huggingface_hub boundary: ``hf://`` parsing and building, tokens, typed errors.

Every huggingface_hub error is translated here (:func:`_translate`, :func:`_call`) into :class:`HubError`
(or a subclass) whose message is redacted, says what to do, and carries no link to the original exception
(whose request holds the ``Authorization`` header). The endpoint is read from
``huggingface_hub.constants.ENDPOINT`` at call time and passed explicitly. Tokens come from the ``token``
argument, else ``HF_TOKEN`` / ``hf auth login`` (``huggingface_hub.get_token``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iadbe import constants
from iadbe.errors import IADBEError, ModelFormatError, ModelUnavailableError, SettingsError

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
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
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
        return bool(self.revision and COMMIT_RE.fullmatch(self.revision))

    @property
    def uri(self) -> str:
        return hub_uri(self.repo_id, self.path_in_repo, self.revision, self.repo_type)

    def __str__(self) -> str:
        return self.uri


def hub_uri(repo_id: str, path_in_repo: str = "", revision: str | None = None, repo_type: str = "model") -> str:
    """``hf://[datasets/]OWNER/NAME[/PATH][@REVISION]``, the form :func:`parse_hub_ref` and ``iadbe.load_model``
    read (the one place such a reference is written)."""
    prefix = "datasets/" if repo_type == "dataset" else ""
    path = "/" + path_in_repo.strip("/") if path_in_repo.strip("/") else ""
    return f"hf://{prefix}{repo_id}{path}" + (f"@{revision}" if revision else "")


def clean_path(path: str, what: str = "path in repo") -> str:
    path = path.strip("/")
    if not path:
        return ""
    if "\\" in path or any(p in ("", ".", "..") for p in path.split("/")):
        raise SettingsError(f"invalid {what} {path!r}: use a relative folder like 'padim/bottle'")
    return path


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it is a valid OWNER/NAME, else :class:`SettingsError`."""
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
    repo_id = check_repo_id("/".join(segments[:2]))
    path = "/".join(segments[2:])
    if at and not path and "/" in revision:  # huggingface_hub order: @REVISION/PATH
        special = _SPECIAL_REF.match(revision)
        if special:
            revision, path = special.group(0), revision[special.end():]
        else:
            revision, _, path = revision.partition("/")
    if at and (not revision or re.search(r"\s|\.\.|[~^:?*\[\\]", revision)):
        raise SettingsError(f"invalid revision {revision!r} in {ref!r}")
    return HubRef(repo_id, clean_path(path), revision or None, repo_type)


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


def resolve_token(token: str | None) -> str | None:
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
def endpoint() -> str:
    from huggingface_hub import constants as hf_constants

    return hf_constants.ENDPOINT.rstrip("/")


def is_offline() -> bool:
    from huggingface_hub import constants as hf_constants

    return bool(constants.HF_HUB_OFFLINE or hf_constants.HF_HUB_OFFLINE)


def cache_root(cache_dir: str | Path | None) -> Path:
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
            f"{action} {where}: the Hub at {endpoint()} cannot be reached ({type(err).__name__}: "
            f"{redact(str(err), tokens) or 'no answer'}); check the network, HF_ENDPOINT, or set HF_HUB_OFFLINE=1 "
            "to use cached models only"
        )
    if isinstance(err, hf_errors.LocalEntryNotFoundError):
        return HubUnreachableError(f"{action} {where}: {redact(str(err).splitlines()[0], tokens)}")
    if isinstance(err, hf_errors.FileMetadataError):
        return HubError(f"{action} {where}: {endpoint()} does not answer like a Hugging Face Hub "
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


def call_hub(fn: Callable[[], Any], action: str, ref: HubRef, token: str | None) -> Any:
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


def hub_api(token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token if token else False)
