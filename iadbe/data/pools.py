"""Parsers of layouts without an official train/test split: KolektorSDD and plain ``good/`` + ``defect/`` folders.

They return ``RawSplits(pooled=True)``: every image in ``train``; the loader draws the seeded test split.
"""

from __future__ import annotations

from pathlib import Path

from iadbe.data.files import find_child, list_images, listed, mask_key, require, subdirs
from iadbe.data.samples import ANOMALOUS, NORMAL, RawSplits, Sample
from iadbe.errors import DatasetError

NORMAL_DIRS = ("good", "normal", "ok")
DEFECT_DIRS = ("defect", "defects", "defective", "bad", "anomaly", "anomalies", "anomalous", "abnormal", "ng", "ko")
MASK_DIRS = ("masks", "mask", "ground_truth", "groundtruth", "gt")
KOLEKTOR_LABEL_SUFFIXES = ("_label", "_GT")


# --- KolektorSDD ---------------------------------------------------------------------------------

def is_kolektor_label(path: Path) -> bool:
    """True for a KolektorSDD label image (``Part3_label.bmp``)."""
    return path.stem.endswith(KOLEKTOR_LABEL_SUFFIXES)


def parse_kolektor(root: Path, category: str | None) -> RawSplits:
    """KolektorSDD: ``kosNN/PartN.jpg`` + ``kosNN/PartN_label.bmp``; an all-zero label means normal."""
    files = list_images(root, recursive=True)
    labels = {(p.parent, mask_key(p)): p for p in files if is_kolektor_label(p)}
    images = [p for p in files if not is_kolektor_label(p)]
    missing = [str(p.relative_to(root)) for p in images if (p.parent, p.stem) not in labels]
    require(not missing, f"KolektorSDD images without a <stem>_label.bmp next to them: {listed(missing)}")
    raw = RawSplits(root=root, category=category, layout="kolektor", pooled=True)
    for image in images:
        label_file = labels[(image.parent, image.stem)]
        if _any_nonzero(label_file):
            raw.train.append(Sample(image, ANOMALOUS, label_file, "defect"))
        else:
            raw.train.append(Sample(image, NORMAL, None, "good"))
    raw.notes.append("KolektorSDD has no official split: the test split is drawn from the images (seeded)")
    return raw


def _any_nonzero(mask: Path) -> bool:
    """True when a label image has any non-zero pixel (full decode; labels are small)."""
    import numpy as np
    from PIL import Image

    with Image.open(mask) as img:
        return bool(np.asarray(img.convert("L")).any())


# --- good/ + defect/ folders ---------------------------------------------------------------------

def parse_good_defect(root: Path, category: str | None) -> RawSplits:
    """``good/`` + one or more defect folders (``defect/``, ``bad/``, ``<type>/``...) + optional ``masks/``."""
    normal_dir = find_child(root, NORMAL_DIRS)
    require(normal_dir is not None, f"No normal-image folder ({'/'.join(NORMAL_DIRS)}) in {root}")
    mask_root = find_child(root, MASK_DIRS)
    raw = RawSplits(root=root, category=category, layout="good_defect", pooled=True)
    raw.train = [Sample(p, NORMAL, None, "good") for p in list_images(normal_dir, recursive=True)]
    defects = _defect_images(root, {normal_dir, mask_root}, raw.notes)
    masks = _match_masks(defects, mask_root, raw.train) if mask_root else [None] * len(defects)
    raw.train += [Sample(p, ANOMALOUS, m, t) for (p, t, _), m in zip(defects, masks, strict=True)]
    if defects and mask_root is None:
        raw.notes.append("no masks folder (masks/, ground_truth/): image-level metrics only")
    return raw


def _defect_images(root: Path, skip: set[Path | None], notes: list[str]) -> list[tuple[Path, str, Path]]:
    """(image, defect type, relative folder) of every defect folder; nested folders name the type."""
    found: list[tuple[Path, str, Path]] = []
    for folder in subdirs(root):
        if folder in skip:
            continue
        images = list_images(folder, recursive=True)
        if images and folder.name.lower() not in DEFECT_DIRS:
            notes.append(f"folder {folder.name}/ read as defect type {folder.name!r}")
        for image in images:
            relative = image.relative_to(root)
            defect_type = relative.parts[1] if len(relative.parts) > 2 else folder.name
            found.append((image, defect_type, relative.parent))
    return found


def _match_masks(defects: list[tuple[Path, str, Path]], mask_root: Path,
                 normals: list[Sample]) -> list[Path | None]:
    """Pair each defect image with the mask of the same stem (``000.png`` or ``000_mask.png``)."""
    by_key: dict[str, list[Path]] = {}
    for mask in list_images(mask_root, recursive=True):
        by_key.setdefault(mask_key(mask), []).append(mask)
    result: list[Path | None] = []
    missing: list[str] = []
    ambiguous: list[str] = []
    used: set[Path] = set()
    for image, _, rel_dir in defects:
        candidates = _prefer_same_folder(by_key.get(image.stem, []), mask_root, rel_dir)
        if not candidates:
            missing.append(image.name)
        elif len(candidates) > 1:
            ambiguous.append(image.name)
        else:
            used.add(candidates[0])
        result.append(candidates[0] if len(candidates) == 1 else None)
    normal_stems = {s.image.stem for s in normals}
    orphans = [str(m.relative_to(mask_root)) for ms in by_key.values() for m in ms
               if m not in used and mask_key(m) not in normal_stems]
    _raise_mismatch(mask_root, missing, ambiguous, orphans)
    return result


def _prefer_same_folder(candidates: list[Path], mask_root: Path, rel_dir: Path) -> list[Path]:
    """Among masks of one stem, keep those in a folder named like the image's (masks/scratch <-> defect/scratch)."""
    if len(candidates) <= 1:
        return candidates
    same = [m for m in candidates if m.parent != mask_root and m.parent.name == rel_dir.name]
    return same or candidates


def _raise_mismatch(mask_root: Path, missing: list[str], ambiguous: list[str], orphans: list[str]) -> None:
    """One :class:`DatasetError` naming every mismatch, or nothing."""
    if not (missing or ambiguous or orphans):
        return
    parts = [f"Masks in {mask_root} do not match the defect images."]
    if missing:
        parts.append(f"No mask (<stem>.png or <stem>_mask.png) for: {listed(missing)}.")
    if ambiguous:
        parts.append(f"Several masks fit (put masks in folders named like the defect folders): {listed(ambiguous)}.")
    if orphans:
        parts.append(f"Masks without a defect image: {listed(orphans)}.")
    raise DatasetError(" ".join(parts))
