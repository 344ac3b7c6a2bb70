"""The fair k-fold protocol: supervised detectors beside anomaly detectors on the same labelled images.

The IADBE study compared its anomaly detectors with YOLO on a Cardboard set by image F1; a supervised
model needs defects to train on, an anomaly detector must never see one. So (issue 18):

- the *labelled images* of a category are its test images (defects and good parts) plus the real labelled
  defects the loader found outside the test set (a YOLO export's train defects). They are dealt into
  ``folds`` folds, stratified by defect type, seeded and the same on every machine (:func:`assign_folds`);
  every labelled image is tested exactly once, by models that never saw it;
- for fold ``k`` the other folds are the *training folds*; a seeded quarter of them (stratified) is the
  *validation part*, the rest the *supervised training part*;
- **supervised track**: trains on the normal training images plus the supervised training part (its
  defects with masks), calibrates on the dataset's validation normals plus the validation part;
- **anomaly track**: trains on the normal training images only, calibrates on the same validation data,
  is scored on the same test fold. It never trains on a defect (``train`` refuses, :mod:`iadbe.data.supervised`).

Both tracks train on the same seeded subset of normal training images (``max_train_images``). Synthetic
validation anomalies are dropped: the validation part holds real ones. Tests: ``tests/test_kfold.py``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from iadbe.errors import SettingsError

#: Share of the training folds kept for validation (thresholds) in both tracks.
VALIDATION_SHARE = 0.25
MIN_FOLDS, MAX_FOLDS = 2, 10


@dataclass(frozen=True)
class FoldSplits:
    """One fold's data: ``supervised`` and ``anomaly`` are the :class:`~iadbe.data.DatasetSplits` each
    track trains, calibrates and is tested on (same test images, same validation, same normal images)."""

    fold: int
    folds: int
    supervised: Any
    anomaly: Any

    def for_track(self, supervised: bool) -> Any:
        return self.supervised if supervised else self.anomaly


def check_folds(folds: int) -> int:
    if not isinstance(folds, int) or not MIN_FOLDS <= folds <= MAX_FOLDS:
        raise SettingsError(f"--folds must be an integer between {MIN_FOLDS} and {MAX_FOLDS}, got {folds!r}")
    return folds


def _key(sample: Any, root: Path, seed: int, salt: str) -> str:
    from iadbe.data.samples import seeded_key

    return seeded_key(sample, root, seed, salt)


def _strata(samples: Sequence[Any]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = defaultdict(list)
    for sample in samples:
        groups["good" if not sample.is_anomalous else f"defect:{sample.defect_type}"].append(sample)
    return dict(sorted(groups.items()))


def assign_folds(samples: Sequence[Any], folds: int, root: Path, seed: int = 0) -> list[list[Any]]:
    """Deal ``samples`` into ``folds`` test folds: each stratum (good, each defect type) in a seeded order,
    round robin, continuing where the previous stratum stopped so that fold sizes differ by at most one.
    ``root``: the dataset's root; the order hashes paths relative to it (the same folds in every checkout)."""
    check_folds(folds)
    dealt: list[list[Any]] = [[] for _ in range(folds)]
    position = 0
    for _, group in _strata(samples).items():
        for sample in sorted(group, key=lambda s: _key(s, root, seed, "fold")):
            dealt[position % folds].append(sample)
            position += 1
    return dealt


def labelled_images(splits: Any) -> list[Any]:
    """The test images plus the real labelled defects found outside the test set (never synthetic ones)."""
    from iadbe.data.supervised import labelled_defects

    return list(splits.test) + labelled_defects(splits.val)


def _split_validation(samples: Sequence[Any], seed: int, root: Path) -> tuple[list[Any], list[Any]]:
    """(training part, validation part): a seeded :data:`VALIDATION_SHARE` of each stratum, at least one."""
    train, val = [], []
    for _, group in _strata(samples).items():
        ordered = sorted(group, key=lambda s: _key(s, root, seed, "validation"))
        count = max(1, round(VALIDATION_SHARE * len(ordered))) if len(ordered) > 1 else 0
        val += ordered[:count]
        train += ordered[count:]
    return train, val


def _subset(samples: Sequence[Any], limit: int | None, seed: int, root: Path) -> list[Any]:
    if limit is None or limit >= len(samples):
        return list(samples)
    return sorted(sorted(samples, key=lambda s: _key(s, root, seed, "normals"))[:limit], key=lambda s: str(s.image))


def fold_splits(splits: Any, fold: int, folds: int, seed: int = 0, max_train_images: int | None = None) -> FoldSplits:
    """The data of fold ``fold`` (0-based) of ``folds`` over ``splits`` (what ``load_dataset`` read)."""
    check_folds(folds)
    if not 0 <= fold < folds:
        raise SettingsError(f"fold must be between 0 and {folds - 1}, got {fold}")
    labelled = labelled_images(splits)
    if sum(s.is_anomalous for s in labelled) < folds:
        raise SettingsError(f"{folds}-fold needs at least {folds} labelled defects; {splits.name} has "
                            f"{sum(s.is_anomalous for s in labelled)}")
    dealt = assign_folds(labelled, folds, splits.root, seed)
    test = dealt[fold]
    rest = [s for k, part in enumerate(dealt) if k != fold for s in part]
    supervised_part, validation_part = _split_validation(rest, seed + fold, splits.root)
    normals = _subset([s for s in splits.train if not s.is_anomalous], max_train_images, seed, splits.root)
    taken = {s.image for s in labelled}
    val = [s for s in splits.val if not s.is_anomalous and s.image not in taken] + validation_part
    note = (f"{folds}-fold protocol, fold {fold + 1}: {len(test)} test images ({sum(s.is_anomalous for s in test)} "
            f"defects) of {len(labelled)} labelled; validation: {len(val)} images ({len(validation_part)} from the "
            f"training folds); {len(normals)} normal training images")
    # the folds are stratified: the labelled images' defect share is the test fold's, known without it
    share = sum(s.is_anomalous for s in rest) / len(rest)
    common = dict(val=val, test=test, defect_share=share,
                  val_source=f"{splits.val_source.split(' + ')[0]} + {len(validation_part)} "
                             f"images of the training folds ({folds}-fold, fold {fold + 1})")
    anomaly = replace(splits, train=normals, notes=list(splits.notes) + [note], **common)
    supervised = replace(splits, train=normals + supervised_part,
                         notes=list(splits.notes) + [note + f"; supervised: + {len(supervised_part)} labelled "
                                                           "images of the training folds"], **common)
    return FoldSplits(fold, folds, supervised, anomaly)
