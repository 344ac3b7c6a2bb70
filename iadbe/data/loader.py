"""``load_dataset``: read a local dataset and split it so that validation never touches the test set.

The rule (the original study validated on its test set; we never do):
- val normals come from the dataset's own validation split when it has one, else a seeded
  ``val_fraction`` of the train normals (at least 2 when train has >= 10 images);
- val anomalies are real anomalous images that are not test images (anomalies found in train/, a
  YOLO val split) when there are any, else synthetic Perlin anomalies made from the val normals.
Seeded splits order images by ``sha256(seed, split, path relative to the root)``: deterministic on
every machine, and adding an image does not reshuffle the others.
"""

from __future__ import annotations

from pathlib import Path

from iadbe.data.archive import resolve_dataset_root
from iadbe.data.checks import check_files
from iadbe.data.layouts import KIND_LAYOUTS, locate, parser_of
from iadbe.data.samples import SYNTHETIC_TYPE, DatasetSplits, RawSplits, Sample, seeded_key
from iadbe.data.synthetic import make_synthetic_anomalies
from iadbe.errors import DatasetError

KINDS = tuple(KIND_LAYOUTS)
#: Share of the normal images that goes to test when a dataset has no official split.
POOL_TEST_FRACTION = 0.2


def local_dataset_root(root: str | Path) -> Path:
    """``root`` as a local path: ``hf://datasets/OWNER/NAME[/PATH][@REVISION]`` is downloaded (verified,
    cached; offline it comes from the cache) through :func:`iadbe.hub.download_dataset`."""
    if isinstance(root, str) and root.startswith("hf://"):
        from iadbe.hub import download_dataset

        return download_dataset(root)
    return Path(root)


def list_categories(kind: str, root: str | Path) -> list[str]:
    """Categories of a dataset root: the sub-folders whose layout fits ``kind`` (sorted).

    A root that is itself one category (``mvtec_3d/tire``), or a kind without categories
    (``kolektor``, a ``folder`` dataset), gives one name: the folder's own.

    Raises:
        DatasetError: the root is missing or nothing in it has the layout of ``kind``.
    """
    from iadbe.data.files import subdirs
    from iadbe.data.layouts import probe_layout

    if kind not in KIND_LAYOUTS:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    root = resolve_dataset_root(local_dataset_root(root))
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root}")
    accepted = KIND_LAYOUTS[kind]
    if kind == "visa" and (root / "split_csv" / "1cls.csv").is_file():
        return sorted(d.name for d in subdirs(root) if (d / "Data").is_dir())
    if probe_layout(root) in accepted:
        return [root.name]
    found = sorted(d.name for d in subdirs(root) if probe_layout(d) in accepted)
    if not found:
        raise DatasetError(f"no {kind} category found in {root} (no sub-folder has that layout)")
    return found


def load_dataset(kind: str, root: str | Path, category: str | None = None, *, val_fraction: float = 0.1,
                 seed: int = 0, synthetic_dir: str | Path | None = None) -> DatasetSplits:
    """Read a local dataset (folder or .zip) and build train / val / test.

    Args:
        kind: ``mvtec``, ``mvtec3d``, ``btech``, ``kolektor``, ``visa`` or ``folder`` (auto-detected layout).
        root: dataset folder (or zip); for MVTec-like kinds the folder holding ``<category>/``, or the
            category folder itself.
        category: category sub-folder (VisA: object name in ``split_csv/1cls.csv``).
        val_fraction: share of train normals moved to val when the dataset has no validation split.
        seed: seed of every split and of the synthetic anomalies.
        synthetic_dir: where synthetic val anomalies go (default ``IADBE_HOME/synthetic/<hash>``).

    Returns:
        DatasetSplits; ``report()`` says what was found and how val was built.

    Raises:
        DatasetError: missing root, unknown layout, no normal images, mismatched masks, unreadable images...

    Example:
        >>> splits = load_dataset("mvtec3d", "../shared/data/mvtec_3d", "tire")  # doctest: +SKIP
        >>> print(splits.report())  # doctest: +SKIP
    """
    if kind not in KIND_LAYOUTS:
        raise DatasetError(f"Unknown dataset kind {kind!r}; use one of: {', '.join(KINDS)}")
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    folder, category, layout = locate(resolve_dataset_root(local_dataset_root(root)), category, KIND_LAYOUTS[kind])
    raw = parser_of(layout)(folder, category)
    _check_images(raw)
    train, val, test, parts = _split(raw, val_fraction, seed)
    share = _defect_share(raw)
    _check_disjoint(train, val, test)
    notes = raw.notes + check_files(train + val + test, raw.root)
    if not any(s.is_anomalous for s in val):
        synthetic, where = make_synthetic_anomalies(val, seed, Path(synthetic_dir) if synthetic_dir else None)
        val = val + synthetic
        parts.append(f"{len(synthetic)} synthetic Perlin anomalies made from the val normals (in {where})")
    notes += _test_notes(test, val)
    name = raw.root.name if kind == "folder" else kind
    return DatasetSplits(name=name, root=raw.root, category=raw.category, layout=layout, train=train, val=val,
                         test=test, val_source=" + ".join(parts), notes=notes, defect_share=share)


def _check_images(raw: RawSplits) -> None:
    """At least two images and at least one normal image."""
    every = raw.train + raw.val + raw.test
    if len(every) < 2:
        found = f"only {every[0].image.name}" if every else "no images"
        raise DatasetError(f"{raw.root}: {found}; a dataset needs normal images (at least 2) to train on")
    if not any(not s.is_anomalous for s in every):
        raise DatasetError(f"{raw.root}: no normal images found; anomaly detectors train on normal images only")


_SplitResult = tuple[list[Sample], list[Sample], list[Sample], list[str]]


def _split(raw: RawSplits, val_fraction: float, seed: int) -> _SplitResult:
    """(train, val without synthetic anomalies, test, descriptions of the val parts)."""
    notes = raw.notes
    if raw.pooled or not raw.test:
        if not raw.pooled:
            notes.append("no test images: the test split is drawn from the train normals (seeded)")
        raw = _pool_split(raw, seed)
    train = [s for s in raw.train if not s.is_anomalous]
    train_anomalies = [s for s in raw.train if s.is_anomalous]
    own_normals = [s for s in raw.val if not s.is_anomalous]
    own_anomalies = [s for s in raw.val if s.is_anomalous]
    test = list(raw.test)
    if own_normals and not any(not s.is_anomalous for s in test):
        test += own_normals
        notes.append(f"test has no normal images: the {len(own_normals)} normals of {raw.val_name} are "
                     "used as the normal part of the test set, val normals are drawn from train")
        own_normals = []
    parts: list[str] = []
    if own_normals:
        parts.append(f"{len(own_normals)} normal images of {raw.val_name}")
        val = own_normals
    else:
        train, val = _hold_out(train, raw.root, val_fraction, seed)
        parts.append(f"{len(val)} of {len(train) + len(val)} train normals (seeded, val_fraction={val_fraction})")
    if own_anomalies:
        parts.append(f"{len(own_anomalies)} real anomalous images of {raw.val_name}")
    if train_anomalies:
        parts.append(f"{len(train_anomalies)} real anomalous images found in the train split")
        notes.append(f"{len(train_anomalies)} anomalous images in the train split are used for validation, "
                     "not for training")
    return train, val + own_anomalies + train_anomalies, test, parts


def _defect_share(raw: RawSplits) -> float | None:
    """Share of defective images in the splits whose defects go to validation (``train`` of a YOLO export,
    a ``val/`` folder): as they were given, before normals were held out. None where no real defect is
    outside the test split (a dataset without a test split has its train defects drawn into test)."""
    drawn = raw.pooled or not raw.test
    sources = [split for split in ((raw.val,) if drawn else (raw.train, raw.val)) if any(s.is_anomalous for s in split)]
    if not sources:
        return None
    images = sum(len(split) for split in sources)
    return sum(s.is_anomalous for split in sources for s in split) / images


def _order(samples: list[Sample], root: Path, seed: int, salt: str) -> list[Sample]:
    """Deterministic seeded order (:func:`~iadbe.data.samples.seeded_key`)."""
    return sorted(samples, key=lambda sample: seeded_key(sample, root, seed, salt))


def _hold_out(normals: list[Sample], root: Path, fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(kept, held out): a seeded ``fraction`` of the train normals for val; at least 2 from 10 images."""
    n = len(normals)
    if n < 2:
        raise DatasetError(f"{root}: {n} normal training image(s); need at least 2 (one to train, one to "
                           "validate) because validation never uses test images")
    count = max(2 if n >= 10 else 1, round(n * fraction))
    count = min(count, n - 1)
    ordered = _order(normals, root, seed, "val")
    held = set(id(s) for s in ordered[:count])
    return [s for s in normals if id(s) not in held], [s for s in normals if id(s) in held]


def _pool_split(raw: RawSplits, seed: int) -> RawSplits:
    """No official split: a seeded share of normals and every anomaly go to test, the rest stays in train."""
    normals = [s for s in raw.train if not s.is_anomalous]
    anomalies = [s for s in raw.train if s.is_anomalous] + list(raw.test)
    count = min(round(len(normals) * POOL_TEST_FRACTION), max(len(normals) - 2, 0))
    if len(normals) >= 4:
        count = max(count, 1)
    ordered = _order(normals, raw.root, seed, "test")
    test_ids = set(id(s) for s in ordered[:count])
    return RawSplits(root=raw.root, category=raw.category, layout=raw.layout,
                     train=[s for s in normals if id(s) not in test_ids], val=raw.val,
                     test=[s for s in normals if id(s) in test_ids] + anomalies,
                     val_name=raw.val_name, notes=raw.notes)


def _check_disjoint(train: list[Sample], val: list[Sample], test: list[Sample]) -> None:
    """No file may be in two splits (resolved paths); val and test above all."""
    test_paths = {s.image.resolve() for s in test}
    for name, samples in (("val", val), ("train", train)):
        shared = [s.image for s in samples if s.image.resolve() in test_paths]
        if shared:
            raise DatasetError(f"The same files are in {name} and test: {', '.join(map(str, shared[:10]))}")


def _test_notes(test: list[Sample], val: list[Sample]) -> list[str]:
    """Warnings about what cannot be measured on this test set."""
    notes = []
    if not any(s.is_anomalous for s in test):
        synthetic = any(s.defect_type == SYNTHETIC_TYPE for s in val)
        notes.append("test has no anomalous images: image metrics (AUROC, F1) cannot be computed on test"
                     + ("; validation uses synthetic anomalies" if synthetic else ""))
    elif not any(not s.is_anomalous for s in test):
        notes.append("test has no normal images: image AUROC cannot be computed on test")
    anomalous = [s for s in test if s.is_anomalous]
    if anomalous and not any(s.mask for s in anomalous):
        notes.append("no masks in test: pixel metrics cannot be computed")
    return notes
