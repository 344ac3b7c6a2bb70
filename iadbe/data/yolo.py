"""YOLO / Roboflow exports: ``{train,valid,test}/images`` + ``.../labels/<stem>.txt``.

An empty (or absent) label file is a normal image; boxes and polygons become rectangular/polygonal masks.
"""

from __future__ import annotations

from pathlib import Path

from iadbe.data.files import cache_key, derived_dir, find_child, list_images
from iadbe.data.masks import parse_yolo_labels, rasterise_shapes
from iadbe.data.samples import ANOMALOUS, NORMAL, RawSplits, Sample

SPLIT_NAMES = {"train": ("train",), "val": ("valid", "val", "validation"), "test": ("test",)}


def is_yolo(root: Path) -> bool:
    """True when a train/valid/test folder holds an ``images/`` folder."""
    return any(
        (split := find_child(root, names)) is not None and find_child(split, ["images"]) is not None
        for names in SPLIT_NAMES.values()
    )


def parse_yolo(root: Path, category: str | None) -> RawSplits:
    """Read every split; train anomalies go to val, ``valid/`` is val (or test when there is no ``test/``)."""
    names = _class_names(root)
    dirs = {key: find_child(root, names_) for key, names_ in SPLIT_NAMES.items()}
    label_files = sorted(root.glob("*/labels/*.txt"))
    key = cache_key(label_files, "yolo-masks-v1")
    raw = RawSplits(root=root, category=category, layout="yolo")
    read = {k: _read_split(d, names, derived_dir("yolo_masks", key) / d.name, raw.notes) if d else []
            for k, d in dirs.items()}
    raw.train = read["train"]
    if dirs["test"] is not None:
        raw.test, raw.val = read["test"], read["val"]
        raw.val_name = f"{dirs['val'].name}/" if dirs["val"] else ""
    elif dirs["val"] is not None:
        raw.test = read["val"]
        raw.notes.append(f"no test/ split: {dirs['val'].name}/ is used as the test set")
    else:
        raw.pooled = True
        raw.notes.append("only a train/ split: the test split is drawn from it (seeded)")
    if any(s.mask is not None for split in read.values() for s in split):
        raw.notes.append("masks are drawn from the YOLO boxes/polygons (rectangles for boxes): "
                         "pixel metrics are approximate")
    return raw


def _read_split(split_dir: Path, names: dict[int, str], mask_dir: Path, notes: list[str]) -> list[Sample]:
    """Samples of one split; anomalous when the label file has at least one shape."""
    labels_dir = split_dir / "labels"
    samples: list[Sample] = []
    unlabeled = 0
    for image in list_images(split_dir / "images"):
        label_file = labels_dir / f"{image.stem}.txt"
        shapes = parse_yolo_labels(label_file) if label_file.is_file() else []
        unlabeled += not label_file.is_file()
        if not shapes:
            samples.append(Sample(image, NORMAL, None, "good"))
            continue
        defect_type = "+".join(sorted({names.get(cls, f"class_{cls}") for cls, _ in shapes}))
        mask = rasterise_shapes(image, shapes, mask_dir / f"{image.stem}.png")
        samples.append(Sample(image, ANOMALOUS, mask, defect_type))
    if unlabeled:
        notes.append(f"{split_dir.name}/: {unlabeled} images without a label file read as normal")
    return samples


def _class_names(root: Path) -> dict[int, str]:
    """Class names from ``data.yaml`` (list or mapping); {} when absent or unreadable."""
    path = next((p for p in (root / "data.yaml", root / "data.yml") if p.is_file()), None)
    if path is None:
        return {}
    import yaml

    try:
        names = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("names", {})
    except (yaml.YAMLError, AttributeError, UnicodeDecodeError):
        return {}
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items() if str(k).strip().isdigit()}
    return {}
