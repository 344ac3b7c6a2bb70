"""IADBE: Industrial Anomaly Detection Benchmark Engine.

The package is lazy: ``import iadbe`` imports neither torch, anomalib nor gradio.
"""

from __future__ import annotations

from iadbe.lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "load_model": "iadbe.inference.loading",
    "train": "iadbe.training",
    "create_detector": "iadbe.models",
    "list_models": "iadbe.models",
}

__all__ = ["__version__", *_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY)
