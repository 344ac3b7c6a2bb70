"""Dataset stage: local dataset layouts, train/val/test splits, synthetic validation anomalies, safe zips.

Lazy: ``import iadbe.data`` imports neither torch nor anomalib (only ``torch_dataset`` and the
synthetic-anomaly generator do, when used).

    >>> from iadbe.data import load_dataset
    >>> splits = load_dataset("folder", "my_parts/")  # doctest: +SKIP
    >>> print(splits.report())  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Sample": "iadbe.data.samples",
    "DatasetSplits": "iadbe.data.samples",
    "load_dataset": "iadbe.data.loader",
    "KINDS": "iadbe.data.loader",
    "list_categories": "iadbe.data.loader",
    "detect_layout": "iadbe.data.layouts",
    "LAYOUT_NAMES": "iadbe.data.layouts",
    "safe_extract_zip": "iadbe.data.archive",
    "resolve_dataset_root": "iadbe.data.archive",
    "make_synthetic_anomalies": "iadbe.data.synthetic",
    "to_anomalib_dataset": "iadbe.data.torch_dataset",
    "make_dataloader": "iadbe.data.torch_dataset",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'iadbe.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
