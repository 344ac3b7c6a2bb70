"""``launch()``: serve the app (queue, limits, allowed paths) and start the background setup."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Iterable

from iadbe import constants
from iadbe.app.common import (
    DEFAULT_CONCURRENCY,
    MAX_FILE_SIZE,
    QUEUE_MAX_SIZE,
    clear_all_uploads,
    output_root,
    uploads_root,
)

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 7860


def server_address(host: str | None = None, port: int | None = None) -> tuple[str, int]:
    """(host, port): the arguments, else ``GRADIO_SERVER_NAME`` / ``PORT`` / ``GRADIO_SERVER_PORT``,
    else 0.0.0.0:7860."""
    host = host or constants.server_host() or DEFAULT_HOST
    raw = port or constants.server_port() or DEFAULT_PORT
    try:
        return host, int(raw)
    except ValueError:
        raise SystemExit(f"invalid port {raw!r} (PORT / GRADIO_SERVER_PORT)") from None


def launch(host: str | None = None, port: int | None = None, *, prevent_thread_lock: bool = False,
           quiet: bool = False) -> Any:
    """Build and serve the app; blocks unless ``prevent_thread_lock`` (then returns the running Blocks).

    Nothing here waits on the network. When the catalogue is empty the demo model is built in a
    background thread (about a minute, once) while the app already answers.
    """
    from iadbe.app.rest import app_kwargs, describe_only_these
    from iadbe.app.startup import announce_setup, start_background_setup
    from iadbe.app.training_tab import end_session
    from iadbe.app.ui import build_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("lightning", "lightning.pytorch", "lightning_fabric", "anomalib", "timm"):
        logging.getLogger(name).setLevel(logging.WARNING)
    outputs = output_root()
    outputs.mkdir(parents=True, exist_ok=True)
    _clean_leftovers()
    announce_setup()
    demo = build_app()
    demo.unload(end_session)
    demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    skip_event_statistics(demo)
    server_name, server_port = server_address(host, port)
    demo.launch(server_name=server_name, server_port=server_port, share=False, max_file_size=MAX_FILE_SIZE,
                allowed_paths=allowed_paths(), blocked_paths=blocked_paths(), show_error=True,
                prevent_thread_lock=True, quiet=quiet, app_kwargs=app_kwargs(), enable_monitoring=False)
    describe_only_these(demo.app)
    start_background_setup()  # after the server answers: its imports (torch) would slow the start down
    if not prevent_thread_lock:
        demo.block_thread()
    return demo


def skip_event_statistics(demo: Any) -> bool:
    """Stop Gradio from summarising its event log after every event; True when it was done.

    Gradio's queue feeds its ``/monitoring`` page: after each event it builds a pandas table of its last
    10,000 events and their time percentiles, on the server's worker threads, whether or not anyone looks
    (which ``launch(enable_monitoring=False)`` forbids here: the page would show every visitor's calls).
    That cost 1.2 ms per event at 100 events and 7.7 ms from 10,000 on (a profile of the served app's
    ``/predict`` found it, issue 17). Gradio's only switch is an environment variable read when the queue is
    made, ``GRADIO_ANALYTICS_CACHE_FREQUENCY``, which would change every Gradio app in the process; this sets
    the same value on this app's queue alone. ``tests/test_app.py`` fails when a Gradio release renames the
    attribute (its name is misspelt there).
    """
    queue = getattr(demo, "_queue", None)
    if queue is None or not hasattr(queue, "ANAYLTICS_CACHE_FREQUENCY"):
        logging.getLogger("iadbe.app").warning("this Gradio version's queue has no event statistics switch; "
                                               "it summarises its events after each one")
        return False
    queue.ANAYLTICS_CACHE_FREQUENCY = sys.maxsize
    return True


def allowed_paths() -> list[str]:
    """The folders Gradio may serve beyond its cache: the views first, then the app's outputs (archives,
    reports). Gradio already serves the views, which lie in its cache folder, but it looks a returned or
    requested file up in the allowed paths (then the working directory and the temporary folder) before
    its cache: listed first, each view costs one path comparison instead of three or four, twice per
    view and request (issue 17). Nothing more is served than before."""
    from iadbe.app.common import view_root

    return [str(view_root()), str(output_root())]


def blocked_paths() -> list[str]:
    """Folders Gradio must never serve, even if a later change widens ``allowed_paths``: the model store,
    extracted uploads, and the Hugging Face home and token file."""
    from huggingface_hub import constants as hf_constants

    from iadbe import constants

    paths = [constants.MODEL_STORE, uploads_root().parent, constants.WORKSPACES_DIR, Path(hf_constants.HF_HOME),
             Path(hf_constants.HF_TOKEN_PATH)]
    return outermost(Path(p).expanduser().absolute() for p in paths)


def outermost(paths: Iterable[Path]) -> list[str]:
    """The paths that lie in none of the others (sorted): a folder blocks everything in it, and Gradio checks
    each file it moves or serves against every blocked path (two path resolutions each, issue 17), so
    nested ones (the token file in the Hugging Face home, by default) only cost time."""
    unique = sorted(set(paths))
    return [str(path) for path in unique if not any(other != path and path.is_relative_to(other) for other in unique)]


def _clean_leftovers() -> None:
    """Staging folders of trainings killed before this start, uploads of sessions that no longer exist, and
    anonymous workspaces unused for longer than ``IADBE_WORKSPACE_TTL_S``."""
    from iadbe import constants
    from iadbe.store import clean_partials
    from iadbe.workspaces import expire_workspaces

    log = logging.getLogger("iadbe.app")
    stores = [None, *sorted(Path(constants.WORKSPACES_DIR).glob("*/models"))]
    removed = 0
    for store in stores:
        try:
            removed += clean_partials(store)
        except OSError:
            continue
    if removed:
        log.info("removed %d unfinished model folder(s) from the store", removed)
    clear_all_uploads()
    expired = expire_workspaces()
    if expired:
        log.info("removed %d expired anonymous workspace(s)", len(expired))
