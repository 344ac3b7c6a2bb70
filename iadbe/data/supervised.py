"""Labelled defects for supervised detectors, and the guarantee that anomaly detectors never train on one.

An anomaly detector (``DetectorSpec.supervised`` False) learns normality: :func:`check_training_samples`
refuses training data holding a defect. A supervised detector (the U-Net, YOLO) learns the defects
themselves: it needs anomalous images with masks (YOLO boxes arrive as box masks, :mod:`iadbe.data.yolo`).

:func:`load_dataset` keeps the training split normal (defects found outside the test set go to validation).
For a supervised detector :func:`supervised_splits` moves a seeded share of those real, labelled validation
defects into training (the rest stay to check the thresholds). A dataset whose labelled defects are all in its
test split (a ``good/ defect/ masks/`` folder, an MVTec category) would leave a supervised detector nothing to
learn from: there a seeded half of the labelled test defects is set aside for it (training and validation),
said in the splits' notes, and its test is the rest. The k-fold protocol (:mod:`iadbe.benchmark.kfold`)
builds its own folds over the labelled test images instead, so that both kinds are scored on the same images.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from iadbe.data.samples import SYNTHETIC_TYPE, DatasetSplits, Sample, seeded_key
from iadbe.errors import SettingsError

#: Share of the validation split's labelled defects a supervised detector trains on (the rest calibrate).
TRAIN_SHARE = 0.67
#: Share of the labelled test defects set aside for a supervised detector where none is outside the test split.
TEST_SHARE = 0.5
#: Fewest labelled test defects for that: at least one to train on, one to calibrate on and two to test on.
MIN_TEST_DEFECTS = 4


def labelled_defects(samples: Sequence[Sample]) -> list[Sample]:
    """The real anomalous samples with a mask (synthetic validation anomalies are not labelled defects)."""
    return [s for s in samples if s.is_anomalous and s.mask is not None and s.defect_type != SYNTHETIC_TYPE]


def check_training_samples(samples: Sequence[Sample], supervised: bool, detector: str) -> None:
    """Refuse training data that does not fit the detector's kind, saying what is wrong.

    Raises:
        SettingsError: an anomaly detector given a defect; a supervised detector given no labelled defect,
            or defects without masks.
    """
    defects = [s for s in samples if s.is_anomalous]
    if not supervised:
        if defects:
            shown = ", ".join(s.image.name for s in defects[:3])
            raise SettingsError(f"{detector} is an anomaly detector: it trains on normal images only, but "
                                f"{len(defects)} training images are defects ({shown}{', ...' if len(defects) > 3 else ''})")
        return
    labelled = labelled_defects(samples)
    normal = len(samples) - len(defects)
    if not labelled:
        unmasked = f"; {len(defects)} defects have no mask or label" if defects else ""
        raise SettingsError(
            f"{detector} is a supervised detector: it trains on labelled defects (anomalous images with a mask, "
            f"or YOLO labels), but the training data has none ({normal} normal images{unmasked}). Give a dataset "
            f"with labelled defects outside its test split (defects with masks in train/ or a YOLO split with "
            f"labels), or run `iadbe benchmark --protocol kfold`, which trains on folds of the labelled test images.")
    if len(labelled) < len(defects):
        raise SettingsError(f"{detector} trains on defects with masks: {len(defects) - len(labelled)} of "
                            f"{len(defects)} training defects have none")


def supervised_splits(splits: DatasetSplits, seed: int = 0, share: float = TRAIN_SHARE) -> DatasetSplits:
    """``splits`` for a supervised detector: a seeded ``share`` of the validation split's labelled real defects
    (at least one) moves into training; normals and the test split are unchanged. Splits whose training part
    already holds labelled defects (the k-fold protocol's) are returned as they are."""
    if labelled_defects(splits.train):
        return splits
    defects = sorted(labelled_defects(splits.val), key=lambda s: _key(s, splits.root, seed))
    if not defects:
        return _set_aside_test_defects(splits, seed, share)
    count = min(len(defects), max(1, round(share * len(defects))))
    moved = set(id(s) for s in defects[:count])
    note = (f"supervised training: {count} of the {len(defects)} labelled validation defects moved to training "
            f"(seed {seed}); {len(defects) - count} stay in validation")
    return replace(splits, train=list(splits.train) + defects[:count],
                   val=[s for s in splits.val if id(s) not in moved], notes=list(splits.notes) + [note])


def _set_aside_test_defects(splits: DatasetSplits, seed: int, share: float) -> DatasetSplits:
    """A seeded :data:`TEST_SHARE` of the labelled test defects moved out of the test split: ``share`` of them to
    training, the rest to validation. Unchanged (and ``check_training_samples`` says what is missing) with fewer
    than :data:`MIN_TEST_DEFECTS`."""
    pool = sorted(labelled_defects(splits.test), key=lambda s: _key(s, splits.root, seed))
    if len(pool) < MIN_TEST_DEFECTS:
        return splits
    taken = pool[: max(2, round(TEST_SHARE * len(pool)))]
    count = min(len(taken) - 1, max(1, round(share * len(taken))))
    moved = set(id(s) for s in taken)
    note = (f"supervised training: all {len(pool)} labelled defects were in the test split, so {len(taken)} were "
            f"set aside for this detector (seed {seed}): {count} to train on, {len(taken) - count} to calibrate on. "
            f"Its test is the other {len(pool) - len(taken)} defects and every good test image, not the whole test "
            "split an anomaly detector is scored on: `iadbe benchmark --protocol kfold` scores both kinds on the "
            "same images")
    return replace(splits, train=list(splits.train) + taken[:count], val=list(splits.val) + taken[count:],
                   test=[s for s in splits.test if id(s) not in moved], notes=list(splits.notes) + [note])


def _key(sample: Sample, root: Path, seed: int) -> str:
    return seeded_key(sample, root, seed, "supervised")
