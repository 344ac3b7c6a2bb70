"""Work done once per server start, in a background thread so the server answers at once.

- the demo model is built (``iadbe.demo.ensure_demo_model``) when the catalogue has no model at all;
- the list of detectors that run here (it imports torch and timm) is computed and cached.

The UI reads :data:`STATUS` to show what is going on.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from iadbe.app.common import logger

#: Seconds the setup thread waits before it imports torch (to list the detectors), when no demo is built.
WARM_DELAY_S = 1.0


@dataclass
class SetupStatus:
    """Thread-safe state of the background setup."""

    state: str = "idle"  # idle | building | ready | failed
    message: str = ""
    fraction: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, state: str, message: str, fraction: float = 0.0) -> None:
        with self._lock:
            self.state, self.message, self.fraction = state, message, fraction

    def snapshot(self) -> tuple[str, str, float]:
        with self._lock:
            return self.state, self.message, self.fraction

    @property
    def busy(self) -> bool:
        return self.snapshot()[0] == "building"

    def markdown(self) -> str:
        state, message, fraction = self.snapshot()
        if state == "building":
            return (f"**Preparing the demo model** ({100 * fraction:.0f} %): {message}. "
                    "It appears in the model list when done.")
        if state == "failed":
            return f"**The demo model could not be built:** {message}"
        return ""


STATUS = SetupStatus()
_STARTED = threading.Event()


def announce_setup() -> None:
    """Mark the demo model as being prepared (before the page is built) when the catalogue is empty."""
    if not _STARTED.is_set() and _needs_demo():
        STATUS.set("building", "starting", 0.0)


def start_background_setup() -> threading.Thread | None:
    """Start the setup thread once per process (later calls do nothing)."""
    if _STARTED.is_set():
        return None
    _STARTED.set()
    thread = threading.Thread(target=_setup, name="iadbe-app-setup", daemon=True)
    thread.start()
    return thread


_IMPORT_LOCK = threading.Lock()
_IMPORTED = threading.Event()


def import_heavy_libraries() -> None:
    """Import torch, torchvision, timm and anomalib's models once, one thread at a time.

    Two threads importing them for the first time at once can deadlock on Python's per-module import locks
    (seen in a test: ``_DeadlockError ... torchvision.ops.misc`` when two visitors' first requests and the
    setup thread imported together). Every handler that needs them calls this first; after the first call
    it costs one ``Event.is_set``.
    """
    if _IMPORTED.is_set():
        return
    with _IMPORT_LOCK:
        if not _IMPORTED.is_set():
            import anomalib.models  # noqa: F401
            import timm  # noqa: F401
            import torch  # noqa: F401
            import torchvision  # noqa: F401

            _IMPORTED.set()


def _needs_demo() -> bool:
    from iadbe.catalog import build_catalog

    try:
        return not build_catalog()
    except Exception:  # noqa: BLE001 - a broken manifest must not stop the server
        logger.exception("cannot read the model catalogue")
        return False


def _setup() -> None:
    from iadbe.errors import IADBEError

    if _needs_demo():
        import_heavy_libraries()
        from iadbe.demo import ensure_demo_model

        STATUS.set("building", "building the demo dataset", 0.0)
        try:
            ensure_demo_model(progress=lambda fraction, message: STATUS.set("building", message, fraction))
            STATUS.set("ready", "demo model ready", 1.0)
        except IADBEError as error:
            STATUS.set("failed", str(error))
        except Exception as error:  # noqa: BLE001 - keep the server up, say what failed
            logger.exception("building the demo model failed")
            STATUS.set("failed", f"{type(error).__name__}: {error}")
    else:
        STATUS.set("ready", "", 1.0)
    try:
        time.sleep(WARM_DELAY_S)  # let the first page load before torch is imported next to it
        import_heavy_libraries()
        availability()
        available_backbones()
    except Exception:  # noqa: BLE001 - the training tab shows the error when it asks again
        logger.exception("cannot list the detectors that run here")


@functools.lru_cache(maxsize=1)
def availability() -> tuple[Any, ...]:
    """``iadbe.models.list_models()``: every detector and whether it runs here (imports torch; cached)."""
    from iadbe.models import list_models

    return tuple(list_models())


def runnable_models() -> list[tuple[str, str]]:
    """(display name, registry name) of the detectors that can be trained here."""
    from iadbe.models import get_spec

    return [(get_spec(row.model).display_name, row.model) for row in availability() if row.runs_here]


@functools.lru_cache(maxsize=1)
def available_backbones() -> tuple[str, ...]:
    """Backbones whose weights are on this machine (cached)."""
    from iadbe.backbones import list_backbones

    return tuple(info.name for info in list_backbones() if info.available)


def all_detectors(supervised: bool = True) -> list[tuple[str, str]]:
    """Every registered detector (without the supervised ones unless ``supervised``), without checking
    weights (cheap: for the first page render)."""
    from iadbe.models import all_specs

    return [(spec.display_name, spec.name) for spec in all_specs() if supervised or not spec.supervised]


def describe() -> dict[str, Any]:
    """``/status``: {"state": idle|building|ready|failed, "message", "fraction"} of the background setup."""
    state, message, fraction = STATUS.snapshot()
    return {"state": state, "message": message, "fraction": round(fraction, 3)}
