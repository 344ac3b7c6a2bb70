"""Our samples as an anomalib dataset, so anomalib models train on them (imports torch and anomalib).

    >>> ds = to_anomalib_dataset(splits.train)  # doctest: +SKIP
    >>> loader = DataLoader(ds, batch_size=8, collate_fn=ds.collate_fn)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from anomalib.data.datasets.base.image import AnomalibDataset
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import Transform

from iadbe.data.samples import Sample
from iadbe.errors import DatasetError

TASKS = ("segmentation", "classification")


class SampleDataset(AnomalibDataset):
    """An :class:`AnomalibDataset` whose ``samples`` table is built from IADBE :class:`Sample` objects."""

    def __init__(self, samples: pd.DataFrame, augmentations: Transform | None = None,
                 category: str | None = None) -> None:
        super().__init__(augmentations=augmentations)
        self.samples = samples
        if category:
            self.category = category


def infer_task(samples: Sequence[Sample]) -> str:
    """``segmentation`` when every anomalous sample has a mask, else ``classification``."""
    anomalous = [s for s in samples if s.is_anomalous]
    return "segmentation" if all(s.mask is not None for s in anomalous) else "classification"


def samples_frame(samples: Sequence[Sample], task: str, split: str) -> pd.DataFrame:
    """The table anomalib expects: image_path, label, label_index, mask_path ('' for none), split; attrs task."""
    frame = pd.DataFrame({
        "image_path": [str(s.image) for s in samples],
        "label": ["abnormal" if s.is_anomalous else "normal" for s in samples],
        "label_index": [int(s.label) for s in samples],
        "mask_path": [str(s.mask) if s.mask else "" for s in samples],
        "defect_type": [s.defect_type for s in samples],
        "split": [split] * len(samples),
    })
    frame.attrs["task"] = task
    return frame


def to_anomalib_dataset(samples: Sequence[Sample], task: str | None = None,
                        augmentations: Transform | None = None, split: str = "train",
                        category: str | None = None) -> SampleDataset:
    """Wrap samples as an anomalib dataset; normal images get zero masks from anomalib itself.

    Args:
        samples: train, val or test samples of a :class:`~iadbe.data.DatasetSplits`.
        task: ``segmentation`` or ``classification``; None picks segmentation when every anomalous
            sample has a mask.
        augmentations: torchvision v2 transform applied to image (and mask).
        split: value of the ``split`` column (``train``, ``val`` or ``test``).
        category: dataset category, for anomalib's bookkeeping.

    Raises:
        DatasetError: no samples, unknown task, or segmentation with anomalous samples lacking masks.
    """
    if not samples:
        raise DatasetError("No samples to build a dataset from")
    task = task or infer_task(samples)
    if task not in TASKS:
        raise DatasetError(f"task must be one of {TASKS}, got {task!r}")
    no_mask = [s.image.name for s in samples if s.is_anomalous and s.mask is None]
    if task == "segmentation" and no_mask:
        raise DatasetError(f"Segmentation needs a mask for every anomalous image; missing for {no_mask[:5]} "
                           f"({len(no_mask)} in all). Use task='classification'.")
    try:
        return SampleDataset(samples_frame(samples, task, split), augmentations, category)
    except FileNotFoundError as exc:
        raise DatasetError(f"Some images of the dataset no longer exist ({exc})") from exc


def make_dataloader(samples: Sequence[Sample], batch_size: int, shuffle: bool, num_workers: int = 0, *,
                    task: str | None = None, augmentations: Transform | None = None,
                    split: str = "train") -> DataLoader:
    """A DataLoader over :func:`to_anomalib_dataset` with anomalib's collate function (``ImageBatch``)."""
    dataset = to_anomalib_dataset(samples, task=task, augmentations=augmentations, split=split)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      collate_fn=dataset.collate_fn, persistent_workers=num_workers > 0)
