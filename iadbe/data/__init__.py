"""Dataset stage: local dataset layouts, train/val/test splits, synthetic validation anomalies, safe zips.

Lazy: ``import iadbe.data`` imports neither torch nor anomalib (only ``torch_dataset`` and the
synthetic-anomaly generator do, when used).

    >>> from iadbe.data import load_dataset
    >>> splits = load_dataset("folder", "my_parts/")  # doctest: +SKIP
    >>> print(splits.report())  # doctest: +SKIP
"""

from __future__ import annotations

from iadbe.lazy import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _LAZY)
