"""Parsers of the MVTec family of layouts (MVTec AD, MVTec LOCO, MVTec 3D-AD, BTech, VisA).

Each returns a :class:`RawSplits`; the validation rule is applied later by the loader. Layouts follow
anomalib's own parsers (``anomalib/data/datasets/image/{mvtecad,btech,visa}.py``,
``depth/mvtec_3d.py``), re-read here so that nothing is downloaded or copied.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from iadbe.data.files import (
    MaskIndex,
    cache_key,
    derived_dir,
    find_child,
    list_images,
    listed,
    require,
    subdirs,
)
from iadbe.data.masks import merge_masks
from iadbe.data.samples import ANOMALOUS, NORMAL, RawSplits, Sample
from iadbe.errors import DatasetError

VAL_NAMES = ("validation", "val", "valid")
#: (split folder, defect-type folder) -> mask folder of that type, or None.
MaskDirOf = Callable[[Path, Path], Path | None]


def pair_masks(images: list[Path], mask_dir: Path | None, where: str) -> list[Path | None]:
    """The mask of each anomalous image in ``mask_dir``; all None when the folder is missing.

    Raises :class:`DatasetError` naming the images without a mask and the masks without an image.
    """
    if mask_dir is None or not mask_dir.is_dir():
        return [None] * len(images)
    index = MaskIndex(mask_dir)
    found = [index.lookup(image) for image in images]
    missing = [image.name for image, masks in zip(images, found, strict=True) if not masks]
    orphans = [p.name for p in index.unused()]
    if missing or orphans:
        parts = [f"Masks in {mask_dir} do not match the images of {where}."]
        if missing:
            parts.append(f"No mask (looked for <stem>.png, <stem>_mask.png) for: {listed(missing)}.")
        if orphans:
            parts.append(f"Masks without an image: {listed(orphans)}.")
        parts.append("Rename the masks after their images (000.png <-> 000.png or 000_mask.png).")
        raise DatasetError(" ".join(parts))
    return [_single_mask(masks, mask_dir) for masks in found]


def _single_mask(masks: list[Path], mask_dir: Path) -> Path:
    """The mask itself, or the union of a LOCO mask folder written to the derived-files cache."""
    if len(masks) == 1:
        return masks[0]
    key = cache_key(masks)
    return merge_masks(masks, derived_dir("merged_masks", key) / f"{mask_dir.name}_{masks[0].parent.name}.png")


def read_type_dir(split_dir: Path, type_dir: Path, normal: bool, mask_dir: Path | None,
                  image_sub: str = "") -> list[Sample]:
    """Samples of one ``<split>/<type>`` folder (masks only for anomalous images)."""
    images = list_images(type_dir / image_sub if image_sub else type_dir)
    if normal:
        return [Sample(p, NORMAL, None, "good") for p in images]
    where = f"{split_dir.name}/{type_dir.name}"
    masks = pair_masks(images, mask_dir, where)
    return [Sample(p, ANOMALOUS, m, type_dir.name) for p, m in zip(images, masks, strict=True)]


def read_split(split_dir: Path | None, normal_names: tuple[str, ...], mask_dir_of: MaskDirOf,
               image_sub: str = "") -> tuple[list[Sample], list[str]]:
    """Samples of every type folder of one split, and notes on anomalous types without masks."""
    samples: list[Sample] = []
    notes: list[str] = []
    for type_dir in subdirs(split_dir) if split_dir else []:
        normal = type_dir.name.lower() in normal_names
        mask_dir = None if normal else mask_dir_of(split_dir, type_dir)
        found = read_type_dir(split_dir, type_dir, normal, mask_dir, image_sub)
        if found and not normal and found[0].mask is None:
            notes.append(f"{split_dir.name}/{type_dir.name}: no masks, pixel metrics skip these images")
        samples += found
    return samples, notes


def parse_mvtec_like(cat_dir: Path, category: str | None, layout: str, *,
                     normal_names: tuple[str, ...] = ("good",), image_sub: str = "",
                     mask_dir_of: MaskDirOf | None = None) -> RawSplits:
    """``train/<type>``, optional ``validation/<type>``, ``test/<type>`` with masks per type."""
    mask_dir_of = mask_dir_of or _ground_truth_of(cat_dir)
    raw = RawSplits(root=cat_dir, category=category, layout=layout)
    val_dir = find_child(cat_dir, VAL_NAMES)
    for split_dir, target in ((find_child(cat_dir, ["train"]), raw.train), (val_dir, raw.val),
                              (find_child(cat_dir, ["test"]), raw.test)):
        samples, notes = read_split(split_dir, normal_names, mask_dir_of, image_sub)
        target += samples
        raw.notes += notes
    if raw.val:
        raw.val_name = f"{val_dir.name}/"
    return raw


def _ground_truth_of(cat_dir: Path) -> MaskDirOf:
    """MVTec AD / LOCO / BTech / VisA: masks of test anomalies in ``ground_truth/<type>``."""
    gt_root = find_child(cat_dir, ["ground_truth", "groundtruth", "ground-truth"])

    def mask_dir_of(split_dir: Path, type_dir: Path) -> Path | None:
        if gt_root is None or split_dir.name.lower() != "test":
            return None
        return find_child(gt_root, [type_dir.name])

    return mask_dir_of


def parse_mvtec(cat_dir: Path, category: str | None) -> RawSplits:
    """MVTec AD: ``train/good``, ``test/<type>``, ``ground_truth/<type>/<stem>_mask.png``."""
    return parse_mvtec_like(cat_dir, category, "mvtec")


def parse_mvtec_loco(cat_dir: Path, category: str | None) -> RawSplits:
    """MVTec LOCO: like MVTec AD plus ``validation/good``; masks ``ground_truth/<type>/<stem>[/000].png``."""
    return parse_mvtec_like(cat_dir, category, "mvtec_loco")


def parse_mvtec3d(cat_dir: Path, category: str | None) -> RawSplits:
    """MVTec 3D-AD, RGB only: ``<split>/<type>/rgb/NNN.png``, masks ``<split>/<type>/gt/NNN.png``."""
    raw = parse_mvtec_like(cat_dir, category, "mvtec3d", image_sub="rgb",
                           mask_dir_of=lambda _split, type_dir: type_dir / "gt")
    if not any((d / "xyz").is_dir() for split in subdirs(cat_dir) for d in subdirs(split)):
        raw.notes.append("RGB images only (no xyz point clouds found; they are not used anyway)")
    return raw


def parse_btech(cat_dir: Path, category: str | None) -> RawSplits:
    """BTech: ``train/ok``, ``test/ok``, ``test/ko``, masks ``ground_truth/ko/<stem>.png``."""
    return parse_mvtec_like(cat_dir, category, "btech", normal_names=("ok", "good"))


def parse_visa_pytorch(cat_dir: Path, category: str | None) -> RawSplits:
    """anomalib-converted VisA: ``{train,test}/{good,bad}``, masks ``ground_truth/bad/<stem>.png``."""
    return parse_mvtec_like(cat_dir, category, "visa_pytorch")


def parse_visa_csv(root: Path, category: str | None) -> RawSplits:
    """Original VisA: ``split_csv/1cls.csv`` rows ``object,split,label,image,mask`` relative to the root."""
    rows = _read_visa_rows(root / "split_csv" / "1cls.csv")
    objects = sorted({row["object"] for row in rows})
    if category is None and len(objects) == 1:
        category = objects[0]
    require(category in objects,
            f"VisA category {category!r} not in {root / 'split_csv' / '1cls.csv'}; pass one of: {listed(objects)}")
    raw = RawSplits(root=root, category=category, layout="visa_csv")
    missing: list[str] = []
    for row in (r for r in rows if r["object"] == category):
        sample = _visa_sample(root, row, missing)
        (raw.train if row["split"] == "train" else raw.test).append(sample)
    require(not missing, f"VisA files listed in 1cls.csv are missing under {root}: {listed(missing)}")
    return raw


def _read_visa_rows(csv_path: Path) -> list[dict[str, str]]:
    """Rows of the VisA split CSV, checked for the expected columns and values."""
    with csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    need = {"object", "split", "label", "image", "mask"}
    require(bool(rows) and need <= set(rows[0]), f"{csv_path} needs the columns {sorted(need)} and at least one row")
    bad = [f"{r['image']} ({r['split']}/{r['label']})" for r in rows
           if r["split"] not in ("train", "test") or r["label"] not in ("normal", "anomaly")]
    require(not bad, f"{csv_path}: unexpected split or label in rows: {listed(bad)}")
    return rows


def _visa_sample(root: Path, row: dict[str, str], missing: list[str]) -> Sample:
    """One VisA CSV row as a Sample (paths must stay under the root)."""
    image = _under_root(root, row["image"])
    mask = _under_root(root, row["mask"]) if row["mask"].strip() else None
    missing += [str(p.relative_to(root)) for p in (image, mask) if p is not None and not p.is_file()]
    if row["label"] == "normal":
        return Sample(image, NORMAL, None, "good")
    return Sample(image, ANOMALOUS, mask, "bad")


def _under_root(root: Path, relative: str) -> Path:
    """``root / relative``, refused when it would point outside the root."""
    path = (root / relative.strip()).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DatasetError(f"VisA CSV path {relative!r} points outside the dataset root {root}")
    return root / relative.strip()
