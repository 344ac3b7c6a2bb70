"""Write a dataset out in another layout: ``iadbe convert SRC DST --to yolo|mvtec``.

Any layout IADBE reads (:mod:`iadbe.data.layouts`) is read as its parser reads it (splits as the source
has them, masks rasterised from YOLO shapes), then written as:

- ``yolo`` (Ultralytics arrangement): ``images/<split>/`` + ``labels/<split>/`` with one ``class cx cy w h``
  line per connected region of the mask (:func:`mask_boxes`) and an EMPTY label file for a normal image,
  plus ``data.yaml`` (``path: .``, the splits, ``names`` = the defect types). Splits: ``train``, ``val``,
  ``test`` where the source has them.
- ``mvtec`` (MVTec AD): ``train/good/``, ``test/good/``, ``test/<type>/`` and ``ground_truth/<type>/<stem>_mask.png``.
  MVTec AD has no validation split and no defects in train: the source's val images and train defects go to
  ``test/`` (the loader then draws validation from the train normals again); the result says so.

Boxes from masks: one box per 8-connected region, in pixel-edge coordinates (a region spanning columns 3..7
gives x0=3, x1=8), so a box drawn into a mask by :func:`iadbe.data.masks.rasterise_shapes` comes back within a
pixel. Overlapping boxes merge into one region: YOLO -> MVTec -> YOLO keeps each separate defect's box, not a
box that another one overlaps.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iadbe.data.samples import Sample
from iadbe.errors import DatasetError

TARGETS = ("yolo", "mvtec")
#: A box in pixels: (x0, y0, x1, y1), x1/y1 exclusive.
PixelBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class ConvertResult:
    """Where the dataset went, how many images per split and kind, and what a user should know."""

    out: Path
    layout: str
    counts: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"wrote {self.layout} dataset to {self.out}"]
        for split, c in self.counts.items():
            lines.append(f"  {split:<5} {c['normal']} normal, {c['anomalous']} anomalous, {c['boxes']} boxes")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def mask_boxes(mask: np.ndarray, min_pixels: int = 1) -> list[PixelBox]:
    """Boxes around the 8-connected regions of a binary mask (H, W), largest region first.

    Regions smaller than ``min_pixels`` are dropped (speckles of a resized mask).
    """
    import cv2

    binary = (np.asarray(mask) > 0).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    boxes = []
    for x, y, w, h, area in stats[1:count]:
        if area >= min_pixels:
            boxes.append((int(area), (int(x), int(y), int(x + w), int(y + h))))
    return [box for _, box in sorted(boxes, key=lambda item: -item[0])]


def read_mask(path: Path) -> np.ndarray:
    """A mask file as a bool array (H, W)."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("L")) > 0


def sample_boxes(sample: Sample) -> tuple[list[tuple[float, float, float, float]], str | None]:
    """Normalised YOLO boxes (cx, cy, w, h) of a sample from its mask, and a note when there are none to give.

    A normal sample has no boxes; a defective one without a mask (or with an empty one) gets one box over the
    whole image, with a note (YOLO cannot say "defective, somewhere").
    """
    if not sample.is_anomalous:
        return [], None
    if sample.mask is None:
        return [(0.5, 0.5, 1.0, 1.0)], f"{sample.image.name}: defective without a mask: one box over the whole image"
    mask = read_mask(sample.mask)
    height, width = mask.shape
    boxes = mask_boxes(mask)
    if not boxes:
        return [(0.5, 0.5, 1.0, 1.0)], f"{sample.image.name}: defective with an empty mask: one box over the image"
    return [((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
            for x0, y0, x1, y1 in boxes], None


def convert_dataset(src: str | Path, dst: str | Path, to: str, *, category: str | None = None,
                    overwrite: bool = False) -> ConvertResult:
    """Read the dataset at ``src`` (any layout IADBE reads) and write it to ``dst`` in the layout ``to``.

    Args:
        src: dataset folder (or .zip), as ``iadbe train --dataset folder`` takes it.
        dst: a new folder (or an empty one); with ``overwrite`` an existing one is replaced.
        to: ``yolo`` or ``mvtec``.
        category: the category sub-folder where ``src`` holds several.
    Raises:
        DatasetError: unknown target, ``dst`` not empty, ``dst`` inside ``src``, unreadable source.

    Example:
        >>> convert_dataset("../shared/data/mvtec_ad/transistor", "transistor_yolo", "yolo")  # doctest: +SKIP
    """
    from iadbe.data.archive import resolve_dataset_root
    from iadbe.data.layouts import KIND_LAYOUTS, locate, parser_of
    from iadbe.data.loader import local_dataset_root

    if to not in TARGETS:
        raise DatasetError(f"unknown target layout {to!r}; expected one of {', '.join(TARGETS)}")
    root = resolve_dataset_root(local_dataset_root(src))
    folder, category, layout = locate(root, category, KIND_LAYOUTS["folder"])
    raw = parser_of(layout)(folder, category)
    out = _prepare_out(Path(dst).expanduser(), folder, overwrite)
    splits = {"train": raw.train, "val": raw.val, "test": raw.test}
    splits = {name: samples for name, samples in splits.items() if samples}
    notes = [f"read {folder} as {layout}"]
    staging = out.with_name(f".{out.name}.converting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        writer = _write_yolo if to == "yolo" else _write_mvtec
        counts = writer(staging, splits, notes)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ConvertResult(out=out, layout=to, counts=counts, notes=notes)


def _prepare_out(out: Path, src: Path, overwrite: bool) -> Path:
    out = out.absolute()
    if out.resolve().is_relative_to(src.resolve()):
        raise DatasetError(f"{out}: the output folder must not be inside the source dataset {src}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DatasetError(f"{out} exists and is not empty; choose a new folder or pass --overwrite")
    return out


def _classes(splits: dict[str, list[Sample]]) -> list[str]:
    return sorted({s.defect_type for samples in splits.values() for s in samples if s.is_anomalous})


def _unique_name(folder: Path, stem: str, suffix: str, used: set[str]) -> str:
    """``stem`` + suffix, or ``stem_2``... when an earlier file of the folder took that stem."""
    name, n = stem, 1
    while f"{folder}/{name}" in used:
        n += 1
        name = f"{stem}_{n}"
    used.add(f"{folder}/{name}")
    return name + suffix


def _copy(image: Path, target: Path) -> None:
    """A hard link where the file system allows one (fast, no space), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(image, target)
    except OSError:
        shutil.copyfile(image, target)


def _write_yolo(out: Path, splits: dict[str, list[Sample]], notes: list[str]) -> dict[str, dict[str, int]]:
    classes = _classes(splits)
    index = {name: i for i, name in enumerate(classes)}
    counts: dict[str, dict[str, int]] = {}
    used: set[str] = set()
    for split, samples in splits.items():
        c = counts[split] = {"normal": 0, "anomalous": 0, "boxes": 0}
        for sample in samples:
            name = _unique_name(Path(split), sample.image.stem, sample.image.suffix.lower(), used)
            _copy(sample.image, out / "images" / split / name)
            boxes, note = sample_boxes(sample)
            if note:
                notes.append(note)
            lines = [f"{index[sample.defect_type]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for cx, cy, w, h in boxes]
            label = out / "labels" / split / (Path(name).stem + ".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            c["anomalous" if sample.is_anomalous else "normal"] += 1
            c["boxes"] += len(boxes)
    yaml_lines = ["path: .", *(f"{split}: images/{split}" for split in splits), f"nc: {len(classes)}", "names:"]
    yaml_lines += [f"  {i}: {_yaml_string(name)}" for i, name in enumerate(classes)]
    (out / "data.yaml").write_text("\n".join(yaml_lines) + "\n", encoding="utf-8")
    notes.append("normal images have empty label files; one box per connected defect region")
    return counts


def _yaml_string(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid YAML scalar, quotes and colons included


def _write_mvtec(out: Path, splits: dict[str, list[Sample]], notes: list[str]) -> dict[str, dict[str, int]]:
    from PIL import Image

    counts: dict[str, dict[str, int]] = {"train": {"normal": 0, "anomalous": 0, "boxes": 0},
                                         "test": {"normal": 0, "anomalous": 0, "boxes": 0}}
    used: set[str] = set()
    moved = 0
    for split, samples in splits.items():
        for sample in samples:
            to_train = split == "train" and not sample.is_anomalous
            moved += split != "test" and not to_train
            folder = Path("train" if to_train else "test") / (sample.defect_type if sample.is_anomalous else "good")
            name = _unique_name(folder, sample.image.stem, sample.image.suffix.lower(), used)
            _copy(sample.image, out / folder / name)
            c = counts["train" if to_train else "test"]
            c["anomalous" if sample.is_anomalous else "normal"] += 1
            if not sample.is_anomalous:
                continue
            mask_path = out / "ground_truth" / sample.defect_type / f"{Path(name).stem}_mask.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            if sample.mask is None:
                from iadbe.data.files import header_size

                width, height = header_size(sample.image)
                mask = np.full((height, width), True)
                notes.append(f"{sample.image.name}: defective without a mask: a mask over the whole image")
            else:
                mask = read_mask(sample.mask)
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
            c["boxes"] += len(mask_boxes(mask))
    if moved:
        notes.append(f"{moved} image(s) of the source's val split or train defects went to test/ "
                     "(MVTec AD has no validation split and no defects in train)")
    return counts
