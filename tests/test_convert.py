"""``iadbe convert``: masks -> boxes, YOLO <-> MVTec AD layouts, boxes kept within a pixel on a round trip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iadbe.cli import main
from iadbe.data import load_dataset
from iadbe.data.convert import convert_dataset, mask_boxes
from iadbe.data.masks import parse_yolo_labels
from iadbe.errors import DatasetError

KOLEKTOR = Path(__file__).resolve().parents[2] / "shared" / "data" / "kolektorsdd_yolo" / "Datasets"


def test_mask_boxes_one_box_per_connected_region_in_pixel_edges() -> None:
    mask = np.zeros((40, 60), bool)
    mask[5:10, 3:8] = True  # 5 x 5 region: columns 3..7
    mask[20:31, 40:44] = True
    mask[21, 44] = True  # touches the second region diagonally-adjacent: same region (8-connectivity)
    assert mask_boxes(mask) == [(40, 20, 45, 31), (3, 5, 8, 10)]
    assert mask_boxes(np.zeros((4, 4), bool)) == []


def _yolo_export(root: Path, boxes_per_image: dict[str, list[tuple[float, float, float, float]]],
                 size: tuple[int, int] = (96, 64)) -> Path:
    """A small Ultralytics-arranged export: noise images, one label file each (empty for normals)."""
    rng = np.random.default_rng(0)
    for name, boxes in boxes_per_image.items():
        split = "train" if name.startswith("t") else "val"
        image = root / "images" / split / f"{name}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(image)
        label = root / "labels" / split / f"{name}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(f"0 {cx} {cy} {w} {h}\n" for cx, cy, w, h in boxes))
    splits = "".join(f"{split}: images/{split}\n" for split in ("train", "val") if (root / "images" / split).is_dir())
    (root / "data.yaml").write_text(f"path: .\n{splits}names: ['scratch']\n")
    return root


def _labels(root: Path) -> dict[str, list[tuple[float, ...]]]:
    return {path.stem: [tuple(coords) for _, coords in parse_yolo_labels(path)]
            for path in sorted(root.glob("labels/*/*.txt"))}


def _within_a_pixel(before: list, after: list, width: int, height: int) -> None:
    assert len(before) == len(after)
    for box in before:
        corners = _corners(box, width, height)
        assert min(np.abs(np.subtract(corners, _corners(other, width, height))).max() for other in after) <= 1.0 + 1e-3


def _corners(box: tuple[float, ...], width: int, height: int) -> tuple[float, ...]:
    cx, cy, w, h = box
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)


def test_yolo_to_mvtec_to_yolo_keeps_boxes_within_a_pixel(tmp_path: Path) -> None:
    boxes = {
        "t_good1": [], "t_good2": [], "t_good3": [], "t_bad": [(0.25, 0.3, 0.2, 0.25), (0.7, 0.7, 0.3, 0.2)],
        "v_good": [], "v_bad": [(0.5, 0.5, 0.113, 0.37)],
    }
    source = _yolo_export(tmp_path / "src", boxes)
    mvtec = convert_dataset(source, tmp_path / "mvtec", "mvtec")
    assert mvtec.counts == {"train": {"normal": 3, "anomalous": 0, "boxes": 0},
                            "test": {"normal": 1, "anomalous": 2, "boxes": 3}}
    assert any("went to test/" in note for note in mvtec.notes)
    assert sorted(p.name for p in (tmp_path / "mvtec" / "ground_truth" / "scratch").iterdir()) == [
        "t_bad_mask.png", "v_bad_mask.png"]
    splits = load_dataset("mvtec", tmp_path / "mvtec")
    assert len(splits.test) == 3 and sum(s.is_anomalous for s in splits.test) == 2

    back = convert_dataset(tmp_path / "mvtec", tmp_path / "yolo", "yolo")
    assert back.counts["test"]["boxes"] == 3
    labels = _labels(tmp_path / "yolo")
    assert labels["t_good1"] == [] and (tmp_path / "yolo" / "labels" / "train" / "t_good1.txt").read_text() == ""
    for name in ("t_bad", "v_bad"):
        _within_a_pixel(boxes[name], labels[name], 96, 64)
    assert "scratch" in (tmp_path / "yolo" / "data.yaml").read_text()
    assert load_dataset("folder", tmp_path / "yolo").layout == "yolo"


def test_cli_convert_refuses_a_folder_that_is_not_empty(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = _yolo_export(tmp_path / "src", {"t_good": [], "t_good2": [], "t_bad": [(0.5, 0.5, 0.2, 0.2)]})
    assert main(["convert", str(source), str(tmp_path / "out"), "--to", "mvtec"]) == 0
    assert "wrote mvtec dataset" in capsys.readouterr().out
    assert main(["convert", str(source), str(tmp_path / "out"), "--to", "mvtec"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["convert", str(source), str(tmp_path / "out"), "--to", "yolo", "--overwrite"]) == 0
    assert (tmp_path / "out" / "data.yaml").is_file() and not (tmp_path / "out" / "train").exists()
    with pytest.raises(DatasetError, match="inside the source"):
        convert_dataset(source, source / "inside", "yolo")
    with pytest.raises(DatasetError, match="unknown target layout"):
        convert_dataset(source, tmp_path / "other", "coco")


def kolektor_subset(root: Path, train: tuple[int, int] = (10, 6), val: tuple[int, int] = (4, 4)) -> Path:
    """A few real KolektorSDD images (YOLOv8 polygon export), linked, not copied: (normal, defective) per split."""
    if not KOLEKTOR.is_dir():
        pytest.skip(f"real data not here: {KOLEKTOR} (../shared/data/kolektorsdd_yolo)")
    for split, (good, bad) in (("train", train), ("val", val)):
        labels = sorted((KOLEKTOR / "labels" / split).glob("*.txt"))
        chosen = [p for p in labels if p.stat().st_size][:bad] + [p for p in labels if not p.stat().st_size][:good]
        for label in chosen:
            for kind, source in (("labels", label), ("images", KOLEKTOR / "images" / split / f"{label.stem}.jpg")):
                target = root / kind / split / source.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(source, target)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: ['defect']\n")
    return root


@pytest.mark.realdata
def test_real_kolektor_polygons_to_boxes_round_trip(tmp_path: Path) -> None:
    """Real polygons -> YOLO boxes (A) -> MVTec masks -> YOLO boxes (C): C's boxes are A's within a pixel."""
    source = kolektor_subset(tmp_path / "src", train=(3, 5), val=(2, 3))
    first = convert_dataset(source, tmp_path / "a", "yolo")
    assert first.counts["train"] == {"normal": 3, "anomalous": 5, "boxes": first.counts["train"]["boxes"]}
    assert first.counts["train"]["boxes"] >= 5
    convert_dataset(tmp_path / "a", tmp_path / "b", "mvtec")
    convert_dataset(tmp_path / "b", tmp_path / "c", "yolo")
    before, after = _labels(tmp_path / "a"), _labels(tmp_path / "c")
    assert set(before) == set(after)
    for name, boxes in before.items():
        image = next((tmp_path / "a" / "images").glob(f"*/{name}.jpg"))
        width, height = Image.open(image).size
        _within_a_pixel(boxes, after[name], width, height)
