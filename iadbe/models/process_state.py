"""Importing a library that changes process-wide settings on import, and putting them back.

Ultralytics (8.4) changes the process it is imported into: it replaces ``PIL.Image.open`` (on a file Pillow cannot
identify it then tries to pip-install pi-heif and raises ``ModuleNotFoundError`` instead of Pillow's error, so
IADBE's "not an image" message for a corrupt upload turned into a crash report), replaces ``torch.save``, sets
OpenCV's threads to 0, numpy's and torch's print options, four environment variables and warning filters. A
public Space serves every visitor from one process and may change none of that: IADBE imports it through
:func:`import_keeping_process_state`, which puts all of it back (``tests/test_yolo.py`` checks each in a fresh
interpreter). Training runs in a child process (:mod:`iadbe.models.yolo_fit`), where the changes do no harm.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import warnings
from types import ModuleType
from typing import Any

_LOCK = threading.Lock()


def import_keeping_process_state(name: str) -> ModuleType:
    """``importlib.import_module(name)``, with the process-wide settings listed above as they were before."""
    with _LOCK:
        if name in sys.modules:
            return sys.modules[name]
        state = _snapshot()
        try:
            return importlib.import_module(name)
        finally:
            _restore(state)


def _snapshot() -> dict[str, Any]:
    import cv2
    import numpy as np
    import torch
    from PIL import Image

    return {
        "pil_open": Image.open, "torch_save": torch.save, "torch_load": torch.load,
        "cv2_threads": cv2.getNumThreads(), "numpy_print": np.get_printoptions(),
        "torch_print": dict(vars(torch._tensor_str.PRINT_OPTS)), "environ": dict(os.environ),
        "warnings": list(warnings.filters),
    }


def _restore(state: dict[str, Any]) -> None:
    import cv2
    import numpy as np
    import torch
    from PIL import Image

    Image.open = state["pil_open"]
    torch.save, torch.load = state["torch_save"], state["torch_load"]
    cv2.setNumThreads(state["cv2_threads"])
    np.set_printoptions(**state["numpy_print"])
    for key, value in state["torch_print"].items():
        setattr(torch._tensor_str.PRINT_OPTS, key, value)
    for key in set(os.environ) - set(state["environ"]):
        del os.environ[key]
    for key, value in state["environ"].items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    warnings.filters[:] = state["warnings"]
    warnings._filters_mutated()  # the module's cache of filter decisions, as warnings.filterwarnings does
