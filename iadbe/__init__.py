"""IADBE: Industrial Anomaly Detection Benchmark Engine.

The package is lazy: ``import iadbe`` imports neither torch, anomalib nor gradio.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "iadbe.inference.loading",
    "train": "iadbe.training",
    "create_detector": "iadbe.models",
    "list_models": "iadbe.models",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'iadbe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
