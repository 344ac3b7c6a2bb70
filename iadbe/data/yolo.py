"""YOLO exports (Ultralytics ``images/<split>`` + ``labels/<split>``, Roboflow ``<split>/images`` + ``<split>/labels``,
with or without ``data.yaml``): where the files are is :mod:`iadbe.data.yolo_splits`; this module reads labels.

Normal images are those whose label file is empty or absent, in every split; boxes and polygons become
rectangular/polygonal masks. The detector trains on the train split's normals; the train split's defective
images go to validation (never to test). The test set is the ``test`` split, or the ``val`` split when there
is no ``test`` split (then validation is drawn from the train split, so calibration never sees a test image).
Only a train split: the loader draws a seeded test split from it. An image named by two splits counts once,
in the first of train, val, test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from iadbe.data.files import cache_key, derived_dir
from iadbe.data.layout_help import LAYOUT_HELP
from iadbe.data.masks import parse_yolo_labels, rasterise_shapes
from iadbe.data.samples import ANOMALOUS, NORMAL, RawSplits, Sample
from iadbe.data.yolo_splits import SPLIT_KEYS, SplitFiles, find_splits, has_arrangement, label_path
from iadbe.errors import DatasetError


def is_yolo(root: Path) -> bool:
    """True for a YOLO export: either folder arrangement, or a ``data.yaml`` naming a train split."""
    return has_arrangement(root)


def parse_yolo(root: Path, category: str | None) -> RawSplits:
    """Read every split (see the module docstring for which images go where).

    Raises:
        DatasetError: bad ``data.yaml`` paths or list files, bad label lines, no normal training image.
    """
    found = find_splits(root)
    raw = RawSplits(root=root, category=category, layout="yolo", notes=list(found.notes))
    files = _dedupe(found.splits, raw.notes)
    labels_dirs: dict[Path, str] = {}
    labels = {key: [label_path(p, labels_dirs, root) for p in split.images] for key, split in files.items()}
    key = cache_key(sorted({p for ls in labels.values() for p in ls if p.is_file()}), "yolo-masks-v2")
    mask_dir = derived_dir("yolo_masks", key)
    read = {k: _read_split(files[k], labels[k], found.names, mask_dir / k, root) for k in files}
    samples = {k: r[0] for k, r in read.items()}
    boxes = sum(r[2] for r in read.values())
    summary = {k: f"{files[k].where}: {r[1]}" for k, r in read.items()}
    _require_train_normals(root, found.arrangement, samples, summary)
    raw.notes.append(f"YOLO export, {found.arrangement}; normal = empty or absent label file")
    raw.notes.extend(summary[k] for k in SPLIT_KEYS if k in summary)
    raw.train = samples.get("train", [])
    if samples.get("test"):
        raw.test, raw.val = samples["test"], samples.get("val", [])
        raw.val_name = f"the val split ({files['val'].where})" if "val" in files else ""
    elif samples.get("val"):
        raw.test = samples["val"]
        raw.notes.append(f"no test split: the val split ({files['val'].where}) is the test set; validation is "
                         "drawn from the train split only")
    else:
        raw.pooled = True
        raw.notes.append("only a train split: the test split is drawn from it (seeded)")
    if boxes:
        raw.notes.append(f"masks are drawn from the YOLO labels ({boxes} boxes drawn as rectangles): "
                         "pixel metrics are approximate")
    elif any(s.mask is not None for split in samples.values() for s in split):
        raw.notes.append("masks are drawn from the YOLO polygons (filled)")
    return raw


def _dedupe(splits: dict[str, SplitFiles], notes: list[str]) -> dict[str, SplitFiles]:
    """Each image once, in its first split of train, val, test; a split left empty is dropped."""
    seen: set[Path] = set()
    out = {}
    for key in SPLIT_KEYS:
        if key not in splits:
            continue
        images, dropped = [], 0
        for image in splits[key].images:
            resolved = image.resolve()
            if resolved in seen:
                dropped += 1
                continue
            seen.add(resolved)
            images.append(image)
        if dropped:
            notes.append(f"{dropped} image(s) of the {key} split ({splits[key].where}) are also in an earlier "
                         "split and are read there only")
        if images:
            out[key] = SplitFiles(splits[key].where, images)
    return out


def _read_split(split: SplitFiles, labels: list[Path], names: dict[int, str], mask_dir: Path,
                root: Path) -> tuple[list[Sample], str, int]:
    """(samples, counts in words, boxes); anomalous when the label file has at least one shape."""
    samples: list[Sample] = []
    empty = absent = boxes = 0
    for image, label_file in zip(split.images, labels, strict=True):
        shapes = parse_yolo_labels(label_file) if label_file.is_file() else []
        if not shapes:
            empty += label_file.is_file()
            absent += not label_file.is_file()
            samples.append(Sample(image, NORMAL, None, "good"))
            continue
        boxes += sum(len(coords) == 4 for _, coords in shapes)
        defect_type = "+".join(sorted({names.get(cls, f"class_{cls}") for cls, _ in shapes}))
        mask = rasterise_shapes(image, shapes, mask_dir / _mask_name(image, root))
        samples.append(Sample(image, ANOMALOUS, mask, defect_type))
    words = f"{len(samples)} images, {empty} with empty labels"
    if absent:
        words += f", {absent} without a label file (normal too)"
    return samples, words + f", {len(samples) - empty - absent} with defects", boxes


def _mask_name(image: Path, root: Path) -> str:
    """Where an image's mask goes under the split's mask folder (unique per image path)."""
    if image.is_relative_to(root):
        return image.relative_to(root).with_suffix(".png").as_posix()
    return f"{hashlib.sha256(str(image).encode()).hexdigest()[:12]}_{image.stem}.png"


def _require_train_normals(root: Path, arrangement: str, samples: dict[str, list[Sample]],
                           summary: dict[str, str]) -> None:
    """A clear error, with what was found per split and the known layouts, when train has no normal image."""
    if any(not s.is_anomalous for s in samples.get("train", [])):
        return
    found = "; ".join(summary[k] for k in SPLIT_KEYS if k in summary) or "no images"
    where = "no train split" if "train" not in samples else "no normal image in the train split"
    raise DatasetError(
        f"{root}: YOLO export ({arrangement}) with {where}. Anomaly detectors train on normal images, which in "
        f"a YOLO export are the images with an empty or absent label file. Found: {found}.\n{LAYOUT_HELP}"
    )
