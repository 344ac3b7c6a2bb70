"""What every tab of the app shares: limits, output folders, the error boundary, the model catalogue.

The app is a thin caller of the library: these helpers turn Gradio's inputs into library arguments and
library errors into messages a user can act on. Nothing here imports torch.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from iadbe import constants

logger = logging.getLogger("iadbe.app")

#: Upload cap of the server (datasets come as zips; images are far smaller); the REST routes use it too.
MAX_FILE_BYTES = 500 * 1024**2
MAX_FILE_SIZE = MAX_FILE_BYTES
#: Images are shown and written at most this many pixels on their long side (scores are not affected:
#: the model sees the full image, resized to its own input size).
DISPLAY_MAX_SIDE = 1024
#: Files per batch request.
MAX_BATCH_FILES = 64
#: Concurrent runs of light events (predict, re-render); heavy events have their own limits below.
DEFAULT_CONCURRENCY = 2
#: Events waiting in the queue before new ones are refused.
QUEUE_MAX_SIZE = 32
#: Per-request output folders older than this are removed when a new one is made.
OUTPUT_MAX_AGE_S = 24 * 3600
#: The PNG views of /predict and /rerender are shown once; they are kept this long.
VIEW_MAX_AGE_S = 3600
#: The views' folder is scanned for old request folders at most this often (every /predict makes one).
VIEW_PRUNE_EVERY_S = 60
DEMO_LABEL = "DEMO (synthetic defects)"

F = TypeVar("F", bound=Callable[..., Any])


def output_root() -> Path:
    """The only folder the app writes files for users to download (and the only ``allowed_paths``)."""
    return constants.IADBE_HOME / "app_outputs"


def request_dir(kind: str) -> Path:
    """A fresh folder for one request (``render.new_output_dir``); old request folders are pruned."""
    from iadbe.render import new_output_dir

    parent = output_root() / kind
    _prune(parent, OUTPUT_MAX_AGE_S)
    return new_output_dir(parent)


def view_dir() -> Path:
    """A fresh folder for one request's view PNGs, inside Gradio's own cache folder.

    Gradio serves a returned file from its cache folder as it is; a file from anywhere else (even an
    ``allowed_paths`` folder) is first hashed (sha256) and copied into the cache: about 2 ms per view,
    8 ms of a /predict here (bench/app.py). Gradio's ``delete_cache`` and :data:`VIEW_MAX_AGE_S` clear it.
    """
    from iadbe.render import new_output_dir

    parent = view_root()
    _prune(parent, VIEW_MAX_AGE_S, every_s=VIEW_PRUNE_EVERY_S, background=True)
    return new_output_dir(parent)


def view_root() -> Path:
    """The folder of all request view folders (:func:`view_dir`), in Gradio's cache folder."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()) / "iadbe-views"


_LAST_PRUNE: dict[Path, float] = {}
_PRUNE_LOCK = threading.Lock()


def _prune(parent: Path, max_age_s: float, every_s: float = 0.0, background: bool = False) -> Future | None:
    """Remove the folders in ``parent`` older than ``max_age_s``; with ``every_s``, scan at most that often
    (a busy hour leaves thousands of view folders: scanning them per request would cost more than it).
    ``background``: on the app's one pruning thread, so that no visitor's request waits for it (removing
    1,500 view folders took 0.2 s: one /predict a minute on a busy Space, issue 17); returns its future."""
    if every_s:
        now = time.monotonic()
        with _PRUNE_LOCK:
            if now - _LAST_PRUNE.get(parent, -every_s) < every_s:
                return None
            _LAST_PRUNE[parent] = now
    if background:
        return _PRUNER.submit(_remove_old_folders, parent, max_age_s)
    _remove_old_folders(parent, max_age_s)
    return None


_PRUNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iadbe-prune")  # its thread starts on first use


def _remove_old_folders(parent: Path, max_age_s: float) -> None:
    if not parent.is_dir():
        return
    limit = time.time() - max_age_s
    for child in parent.iterdir():
        try:
            if child.is_dir() and child.stat().st_mtime < limit:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            continue


def minutes_cap(value: Any, default: float | None = None) -> float | None:
    """Training time cap: empty -> ``default``; 0 -> None (no cap); else positive minutes (fractions allowed)."""
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise fail(f"max training minutes must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise fail(f"max training minutes must be 0 (no limit) or positive, got {value!r}")
    return number or None


# --------------------------------------------------------------------------- uploads and server folders
def uploads_root() -> Path:
    """Where uploaded dataset zips are extracted: one folder per browser/API session, removed when the
    session ends (``demo.unload``), when it is older than ``OUTPUT_MAX_AGE_S``, and when the app starts."""
    return constants.IADBE_HOME / "uploads" / "sessions"


def session_upload_dir(request: Any) -> Path:
    """This session's extraction folder (old sessions' folders are pruned on the way)."""
    raw = str(getattr(request, "session_hash", None) or "default")
    name = "".join(c for c in raw if c.isalnum() or c in "-_")[:64] or "default"
    _prune(uploads_root(), OUTPUT_MAX_AGE_S)
    return uploads_root() / name


def clear_session_uploads(request: Any = None) -> None:
    """``demo.unload`` handler: remove the extracted uploads of the session that just ended."""
    if request is not None and getattr(request, "session_hash", None):
        shutil.rmtree(session_upload_dir(request), ignore_errors=True)


def clear_all_uploads() -> None:
    """At start-up no session exists yet: every extracted upload is a leftover."""
    shutil.rmtree(uploads_root(), ignore_errors=True)


def server_data_roots() -> list[Path]:
    """The only server folders a user may name as a dataset (a public app must not read ``/etc``)."""
    return [constants.SHARED_DATA, constants.IADBE_HOME / "datasets", constants.IADBE_HOME / "demo_dataset"]


def server_folder(text: str) -> Path:
    """``text`` as a folder inside :func:`server_data_roots` (after resolving ``..`` and links).

    Raises:
        gr.Error: the folder is elsewhere on the server.
    """
    path = Path(text).expanduser().resolve()
    roots = [root.expanduser().resolve() for root in server_data_roots()]
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise fail(f"Server folders are read only under {', '.join(str(r) for r in roots)}; "
                   "upload the dataset as a zip instead.", title="Folder not allowed")
    return path


def rate_from_percent(percent: Any) -> float | None:
    """A percentage typed in the UI as the library's rate; empty or 0 (how a browser sends an empty
    ``gr.Number``) -> None, the default. The library checks the range."""
    if percent in (None, ""):
        return None
    try:
        return float(percent) / 100.0 or None
    except (TypeError, ValueError):
        raise fail(f"false alarms must be a percentage such as 1 or 0.1, got {percent!r}") from None


def fail(message: str, title: str = "Error") -> Exception:
    """A ``gr.Error`` for a user mistake: shown in the browser, not printed as a traceback in the server log."""
    import gradio as gr

    return gr.Error(message, title=title, print_exception=False)


def user_errors(fn: F) -> F:
    """The error boundary of every event handler.

    ``IADBEError`` (the library's user-facing errors) becomes ``gr.Error`` with its message as is; anything
    else is logged with its traceback and shown as a short "unexpected error" message. Either way the app
    keeps serving. Messages go through ``hub.redact`` so no token can reach the browser.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import gradio as gr

        from iadbe.errors import IADBEError

        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except IADBEError as error:
            message = redact(str(error))
            logger.info("%s: %s: %s", fn.__name__, type(error).__name__, message.splitlines()[0] if message else "")
            raise fail(message, type(error).__name__) from None
        except MemoryError:
            logger.exception("out of memory in %s", fn.__name__)
            raise fail("Out of memory: try a smaller image, fewer files or a smaller image size.") from None
        except Exception as error:  # noqa: BLE001 - the boundary: log, tell the user, keep serving
            logger.exception("unexpected error in %s", fn.__name__)
            raise fail(f"Unexpected error ({type(error).__name__}: {redact(str(error))[:300]}). "
                       "The app is still running; the server log has the details.") from None

    return wrapper  # type: ignore[return-value]


def redact(text: str, token: str | None = None) -> str:
    from iadbe.hub import redact as hub_redact

    return hub_redact(text, token)


def file_path(value: Any) -> str | None:
    """The local path of a Gradio file value (a path string, a FileData dict, or an object with ``.path``)."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, dict):
        return value.get("path") or None
    return getattr(value, "path", None) or getattr(value, "name", None)


def uploaded_path(value: Any) -> str | None:
    """``file_path(value)`` for events that skip Gradio's preprocessing (``preprocess=False``): accepted only
    when the file lies in Gradio's upload folder (uploads, cached examples) or is a demo example, as Gradio
    itself requires of preprocessed inputs. Otherwise a client could name any file on the server.

    Raises:
        gr.Error: the path points elsewhere on the server.
    """
    from gradio.utils import get_upload_folder

    path = file_path(value)
    if not path:
        return None
    real = Path(path).resolve()
    roots = [Path(get_upload_folder()).resolve(), (constants.IADBE_HOME / "demo_dataset").resolve()]
    if not any(real.is_relative_to(root) for root in roots):
        raise fail("This file was not uploaded to the app: upload the image itself.", title="File not allowed")
    return path


def original_name(value: Any, default: str = "image") -> str:
    """The name the user's file had (Gradio stores uploads under generated folders)."""
    if isinstance(value, dict) and value.get("orig_name"):
        return Path(str(value["orig_name"])).name
    path = file_path(value)
    return Path(path).name if path else default


# --------------------------------------------------------------------------- catalogue
def entry_label(entry: Any) -> str:
    """The catalogue label, marked ``DEMO (synthetic defects)`` for demo models."""
    from iadbe.demo import is_demo

    label = entry.label()
    return f"{DEMO_LABEL} {label}" if is_demo(entry.id) else label


def visitor_workspace(request: Any = None, profile: Any = None) -> Any:
    """The workspace (``iadbe.workspaces``) of the visitor behind a Gradio request: their signed-in account
    (``gr.OAuthProfile``), else their browser / API session. Single-user mode: the local user (the store).

    Old anonymous workspaces are removed on the way (at most every ``WORKSPACE_EXPIRE_EVERY_S``).
    """
    from iadbe.workspaces import expire_workspaces, identify, open_workspace

    username = getattr(profile, "username", None) or (profile.get("preferred_username") if isinstance(
        profile, dict) else None)
    workspace = open_workspace(identify(username, getattr(request, "session_hash", None)))
    if workspace.private:
        now = time.monotonic()
        if now - _LAST_EXPIRY[0] >= WORKSPACE_EXPIRE_EVERY_S:
            _LAST_EXPIRY[0] = now
            expire_workspaces()
        workspace.touch()
    return workspace


#: Anonymous workspaces are checked for expiry at most this often (and at every start).
WORKSPACE_EXPIRE_EVERY_S = 60
_LAST_EXPIRY = [-float(WORKSPACE_EXPIRE_EVERY_S)]


def visible_catalog(workspace: Any = None) -> list[Any]:
    """The models a visitor may use: the manifest's and the server store's, plus their own (shared mode).
    ``workspace`` None: nobody's own models (the page as built before any visitor's request)."""
    from iadbe.catalog import build_catalog

    return build_catalog(workspace=own_models_dir(workspace))


def own_models_dir(workspace: Any = None) -> Path | None:
    """The store of the visitor's own models in shared mode (a private workspace), else None."""
    return workspace.models_dir if workspace is not None and workspace.private else None


def own_source(workspace: Any = None) -> str | None:
    """The catalogue source of the models a visitor owns (may push and delete): their workspace in shared
    mode, the whole local store in single-user mode."""
    if workspace is not None:
        return "workspace" if workspace.private else "local"
    return None if constants.SHARED_MODE else "local"


def model_choices(local_only: bool = False, workspace: Any = None) -> list[tuple[str, str]]:
    """(label, model id) of every model the visitor may use (``local_only``: only their own); ids are what
    ``/predict`` takes."""
    own = own_source(workspace)
    return [(entry_label(e), e.id) for e in visible_catalog(workspace) if not local_only or e.source == own]


def default_model(choices: list[tuple[str, str]]) -> str | None:
    """The first local non-demo model, else the first model, else None."""
    from iadbe.demo import is_demo

    ids = [value for _, value in choices]
    return next((i for i in ids if not is_demo(i)), ids[0] if ids else None)


def resolve_model(value: Any, workspace: Any = None, own_only: bool = False) -> str:
    """Check that ``value`` names a model the visitor may use (id, location or label); return what
    ``load_model`` takes.

    Local models resolve to their directory, manifest models to their id (so the download is verified
    against the manifest's checksums). Anything else is refused: the app never loads arbitrary paths, and
    another visitor's model is not in this visitor's catalogue, so its id or path is refused the same way.
    ``own_only``: only the visitor's own models (pushing, deleting).
    """
    text = str(value or "").strip()
    if not text:
        raise fail("Pick a model first (the Models tab lists them; train one in the Training tab).")
    own = own_source(workspace)
    if PLAIN_ID.fullmatch(text) and (found := _resolve_plain_id(text, workspace, own, own_only)):
        return found
    for entry in visible_catalog(workspace):
        if own_only and entry.source != own:
            continue
        if text in (entry.id, entry.location, entry_label(entry), entry.label()):
            return entry.location if entry.source in ("local", "workspace") else entry.id
    if own_only:
        raise fail(f"{text!r} is not one of your models: only models you trained here can be published or "
                   "deleted.", title="Not your model")
    raise fail(f"Unknown model {text!r}: use a model id from the Models tab (or the /models endpoint).")


#: What an id can be and a label or location cannot (labels hold " [", locations "/" or ":").
PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _resolve_plain_id(text: str, workspace: Any, own: str | None, own_only: bool) -> str | None:
    """What the catalogue loop of :func:`resolve_model` returns for a plain id, without building the catalogue:
    it parsed every stored model's ``iadbe.json`` and looked every manifest model up in the Hugging Face
    cache on each call (0.4 ms with two models, growing with the store; issue 17: /predict and the REST
    route resolve a model per request). Same order: manifest, the visitor's own models, the server's store.
    None where the loop must decide (a label, a location, or an unknown id)."""
    from iadbe.catalog import manifest_entries
    from iadbe.store import stored_model

    if not own_only and any(item.id == text for item in manifest_entries()):
        return text
    mine = own_models_dir(workspace)
    for folder, source in ([(mine, "workspace")] if mine is not None else []) + [(None, "local")]:
        if (not own_only or source == own) and (stored := stored_model(folder, text)) is not None:
            return str(stored.path)
    return None


def dropdown_update(value: Any = None, local_only: bool = False, multiselect: bool = False,
                    workspace: Any = None) -> Any:
    """A ``gr.update`` refreshing a model dropdown's choices (keeping ``value`` when it still exists)."""
    import gradio as gr

    choices = model_choices(local_only, workspace)
    ids = {v for _, v in choices}
    if multiselect:
        kept = [v for v in (value or []) if v in ids]
        return gr.update(choices=choices, value=kept)
    return gr.update(choices=choices, value=value if value in ids else default_model(choices))
