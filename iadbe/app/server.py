"""``launch()``: serve the app (queue, limits, allowed paths) and start the background setup."""

from __future__ import annotations

import logging
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
    server_name, server_port = server_address(host, port)
    demo.launch(server_name=server_name, server_port=server_port, share=False, max_file_size=MAX_FILE_SIZE,
                allowed_paths=[str(outputs)], blocked_paths=blocked_paths(), show_error=True,
                prevent_thread_lock=True, quiet=quiet, app_kwargs=app_kwargs())
    describe_only_these(demo.app)
    start_background_setup()  # after the server answers: its imports (torch) would slow the start down
    if not prevent_thread_lock:
        demo.block_thread()
    return demo


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
