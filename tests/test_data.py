"""Dataset stage: layouts, splits and the validation rule, errors, and the real shared data."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iadbe import constants
from iadbe.data import DatasetSplits, Sample, detect_layout, load_dataset
from iadbe.errors import DatasetError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Everything IADBE writes (synthetic anomalies, derived masks, uploads) goes to tmp."""
    home = tmp_path / "iadbe_home"
    monkeypatch.setattr(constants, "IADBE_HOME", home)
    return home


# --- tiny dataset builders -----------------------------------------------------------------------

def img(path: Path, size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    """A small random RGB image (W x H = size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(f"{path}|{seed}".encode()))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def mask(path: Path, size: tuple[int, int] = (32, 32), on: bool = True) -> Path:
    """A binary mask with a square in it (or all zero)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0]), np.uint8)
    if on:
        arr[8:16, 8:16] = 255
    Image.fromarray(arr).save(path)
    return path


def make_mvtec(root: Path, n_train: int = 12, types: dict[str, int] | None = None, n_good: int = 3,
               mask_suffix: str = "_mask") -> Path:
    """MVTec AD category folder."""
    types = {"scratch": 4, "dent": 2} if types is None else types
    for i in range(n_train):
        img(root / "train" / "good" / f"{i:03d}.png")
    for i in range(n_good):
        img(root / "test" / "good" / f"{i:03d}.png")
    for name, count in types.items():
        for i in range(count):
            img(root / "test" / name / f"{i:03d}.png")
            mask(root / "ground_truth" / name / f"{i:03d}{mask_suffix}.png")
    return root


def paths(samples: list[Sample]) -> set[Path]:
    return {s.image.resolve() for s in samples}


def assert_val_rule(splits: DatasetSplits) -> None:
    """No test image in val or train; val has normals and anomalies; train is normal only."""
    assert not paths(splits.val) & paths(splits.test)
    assert not paths(splits.train) & paths(splits.test)
    assert not paths(splits.train) & paths(splits.val)
    assert all(not s.is_anomalous for s in splits.train)
    assert any(s.is_anomalous for s in splits.val) and any(not s.is_anomalous for s in splits.val)


def synthetic(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.defect_type == "synthetic_perlin"]


# --- layouts ---------------------------------------------------------------------------------------

def test_mvtec_counts_masks_and_synthetic_val(tmp_path: Path) -> None:
    make_mvtec(tmp_path / "mv" / "bottle")
    splits = load_dataset("mvtec", tmp_path / "mv", "bottle", synthetic_dir=tmp_path / "syn")
    assert (splits.layout, splits.category) == ("mvtec", "bottle")
    assert len(splits.train) == 10 and len(splits.test) == 9
    val_normals = [s for s in splits.val if not s.is_anomalous]
    assert len(val_normals) == 2  # 10% of 12, but at least 2 from >= 10 images
    syn = synthetic(splits.val)
    assert len(syn) == 2 and all(s.mask and s.mask.is_file() and s.image.is_file() for s in syn)
    assert all(s.image.parent.parent == tmp_path / "syn" for s in syn)
    with Image.open(syn[0].mask) as m:
        assert m.size == (32, 32) and np.asarray(m).max() == 255
    anomalous = [s for s in splits.test if s.is_anomalous]
    assert len(anomalous) == 6 and all(s.mask and s.mask.name == f"{s.image.stem}_mask.png" for s in anomalous)
    assert {s.defect_type for s in anomalous} == {"scratch", "dent"}
    assert_val_rule(splits)
    assert "synthetic Perlin" in splits.val_source
    assert splits.defect_share is None  # no real defect outside the test split: nothing to weigh
    report = splits.report()
    assert "layout: mvtec" in report and "scratch 4" in report and "masks for all 6" in report
    data = json.loads(json.dumps(splits.to_dict()))
    assert data["counts"]["test"]["anomalous"] == 6 and data["layout"] == "mvtec"
    assert "samples" in splits.to_dict(include_samples=True)


def test_mvtec_category_found_alone_and_as_root(tmp_path: Path) -> None:
    make_mvtec(tmp_path / "mv" / "bottle")
    assert load_dataset("mvtec", tmp_path / "mv").category == "bottle"  # single category
    as_root = load_dataset("folder", tmp_path / "mv" / "bottle")
    assert as_root.layout == "mvtec" and len(as_root.test) == 9
    make_mvtec(tmp_path / "mv" / "cable")
    with pytest.raises(DatasetError, match="several categories"):
        load_dataset("mvtec", tmp_path / "mv")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("mvtec", tmp_path / "mv", "nope")
    with pytest.raises(DatasetError, match="not found"):  # a category folder is not another category
        load_dataset("mvtec", tmp_path / "mv" / "bottle", "cable")
    assert load_dataset("mvtec", tmp_path / "mv" / "bottle", "bottle").category == "bottle"


def test_splits_are_deterministic_and_synthetic_cache_reused(tmp_path: Path, _home: Path) -> None:
    make_mvtec(tmp_path / "bottle", n_train=30)
    first = load_dataset("mvtec", tmp_path / "bottle", seed=3)
    second = load_dataset("mvtec", tmp_path / "bottle", seed=3)
    assert first.val == second.val and first.train == second.train
    syn_dir = synthetic(first.val)[0].image.parent.parent
    assert syn_dir.is_relative_to(_home / "synthetic")
    other = load_dataset("mvtec", tmp_path / "bottle", seed=4)
    assert paths(other.val) != paths(first.val)
    assert len([s for s in first.val if not s.is_anomalous]) == 3  # 10% of 30


def test_mvtec3d_rgb_layout(tmp_path: Path) -> None:
    cat = tmp_path / "m3d" / "tire"
    for split, kind, n in (("train", "good", 10), ("validation", "good", 3), ("test", "good", 2), ("test", "cut", 3)):
        for i in range(n):
            img(cat / split / kind / "rgb" / f"{i:03d}.png")
            if split == "test":
                mask(cat / split / kind / "gt" / f"{i:03d}.png", on=kind != "good")
    assert detect_layout(cat) == "mvtec3d"
    splits = load_dataset("mvtec3d", tmp_path / "m3d", "tire")
    assert len(splits.train) == 10  # own validation split: train untouched
    assert len([s for s in splits.val if not s.is_anomalous]) == 3 and len(synthetic(splits.val)) == 3
    assert sum(s.mask is not None for s in splits.test) == 3
    assert "validation/" in splits.val_source
    assert_val_rule(splits)


def test_btech_layout(tmp_path: Path) -> None:
    cat = tmp_path / "btech" / "01"
    for i in range(10):
        img(cat / "train" / "ok" / f"{i:04d}.bmp")
    for i in range(2):
        img(cat / "test" / "ok" / f"{i:04d}.bmp")
    for i in range(3):
        img(cat / "test" / "ko" / f"{i:04d}.bmp")
        mask(cat / "ground_truth" / "ko" / f"{i:04d}.png")
    splits = load_dataset("btech", tmp_path / "btech", "01")
    assert splits.layout == "btech" and len(splits.test) == 5
    assert all(s.mask for s in splits.test if s.is_anomalous)
    assert {s.defect_type for s in splits.test} == {"good", "ko"}
    assert_val_rule(splits)


def test_kolektor_seeded_pool_split(tmp_path: Path) -> None:
    root = tmp_path / "KolektorSDD"
    for kos in range(4):
        for part in range(5):
            img(root / f"kos{kos:02d}" / f"Part{part}.jpg", size=(32, 64))
            mask(root / f"kos{kos:02d}" / f"Part{part}_label.bmp", size=(32, 64), on=part == 2)
    assert detect_layout(root) == "kolektor"
    splits = load_dataset("kolektor", root)
    anomalous = [s for s in splits.test if s.is_anomalous]
    assert len(anomalous) == 4 and all(s.mask.name.endswith("_label.bmp") for s in anomalous)
    normals_test = [s for s in splits.test if not s.is_anomalous]
    assert len(normals_test) == round(16 * 0.2)
    assert len(splits.train) + len([s for s in splits.val if not s.is_anomalous]) + len(normals_test) == 16
    assert splits.test == load_dataset("kolektor", root).test
    assert_val_rule(splits)


def test_visa_csv_and_converted(tmp_path: Path) -> None:
    root = tmp_path / "VisA"
    rows = ["object,split,label,image,mask"]
    for i in range(12):
        img(root / "candle" / "Data" / "Images" / "Normal" / f"{i:04d}.JPG")
        rows.append(f"candle,{'train' if i < 10 else 'test'},normal,candle/Data/Images/Normal/{i:04d}.JPG,")
    for i in range(3):
        img(root / "candle" / "Data" / "Images" / "Anomaly" / f"{i:03d}.JPG")
        mask(root / "candle" / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png")
        rows.append(f"candle,test,anomaly,candle/Data/Images/Anomaly/{i:03d}.JPG,candle/Data/Masks/Anomaly/{i:03d}.png")
    rows.append("pcb1,train,normal,pcb1/Data/Images/Normal/0000.JPG,")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    splits = load_dataset("visa", root, "candle")
    assert splits.layout == "visa_csv" and len(splits.test) == 5 and len(splits.train) == 8
    assert all(s.mask for s in splits.test if s.is_anomalous)
    with pytest.raises(DatasetError, match="pcb1"):
        load_dataset("visa", root)  # two objects in the CSV: category needed
    with pytest.raises(DatasetError, match="missing"):
        load_dataset("visa", root, "pcb1")

    conv = tmp_path / "visa" / "visa_pytorch" / "candle"
    make_mvtec(conv, types={"bad": 3}, mask_suffix="")
    converted = load_dataset("visa", tmp_path / "visa", "candle")
    assert converted.layout == "visa_pytorch" and len(converted.test) == 6
    assert all(s.mask.name == s.image.name for s in converted.test if s.is_anomalous)


def test_folder_good_defect_with_masks(tmp_path: Path) -> None:
    root = tmp_path / "parts"
    for i in range(10):
        img(root / "good" / f"{i:03d}.png")
    for i in range(3):
        img(root / "defect" / f"{i:03d}.png")
        mask(root / "masks" / f"{i:03d}_mask.png")
    for i in range(3, 5):
        img(root / "NG" / f"{i:03d}.jpg")
        mask(root / "masks" / f"{i:03d}.png")
    assert detect_layout(root) == "good_defect"
    splits = load_dataset("folder", root)
    anomalous = [s for s in splits.test if s.is_anomalous]
    assert len(anomalous) == 5 and all(s.mask and s.mask.stem.startswith(s.image.stem) for s in anomalous)
    assert {s.defect_type for s in anomalous} == {"defect", "NG"}
    assert len([s for s in splits.test if not s.is_anomalous]) == 2
    assert splits.name == "parts" and splits.layout == "good_defect"
    assert splits.defect_share is None  # a pooled dataset's defects all go to test
    assert_val_rule(splits)


def test_folder_defect_types_in_subfolders_with_mirrored_masks(tmp_path: Path) -> None:
    root = tmp_path / "parts"
    for i in range(6):
        img(root / "good" / f"{i:03d}.png")
    for kind in ("scratch", "dent"):
        for i in range(2):  # same stems in both types: masks must mirror the folders
            img(root / "bad" / kind / f"{i:03d}.png")
            mask(root / "ground_truth" / kind / f"{i:03d}.png")
    splits = load_dataset("folder", root)
    anomalous = [s for s in splits.test if s.is_anomalous]
    assert {s.defect_type for s in anomalous} == {"scratch", "dent"}
    assert all(s.mask.parent.name == s.defect_type for s in anomalous)


def test_folder_without_defects_still_loads(tmp_path: Path) -> None:
    for i in range(12):
        img(tmp_path / "only_good" / "good" / f"{i:03d}.png")
    splits = load_dataset("folder", tmp_path / "only_good")
    assert not any(s.is_anomalous for s in splits.test) and splits.test
    assert synthetic(splits.val)
    assert any("cannot be computed on test" in n for n in splits.notes)
    assert "cannot be computed" in splits.report()


def test_folder_yolo_export(tmp_path: Path) -> None:
    root = tmp_path / "roboflow"
    (root).mkdir()
    (root / "data.yaml").write_text("names: ['scratch', 'dent']\n")
    layout = {"train": (8, 2), "valid": (3, 2), "test": (3, 3)}
    for split, (n_ok, n_bad) in layout.items():
        for i in range(n_ok + n_bad):
            img(root / split / "images" / f"{split}_{i}.jpg", size=(40, 20))
            label = root / split / "labels" / f"{split}_{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("" if i < n_ok else "1 0.5 0.5 0.5 0.5\n")
    assert detect_layout(root) == "yolo"
    splits = load_dataset("folder", root)
    assert len(splits.train) == 8 and len(splits.test) == 6
    assert not synthetic(splits.val)  # real anomalies from valid/ and train/ are used instead
    assert len([s for s in splits.val if s.is_anomalous]) == 4
    bad = [s for s in splits.test if s.is_anomalous][0]
    assert bad.defect_type == "dent"
    arr = np.asarray(Image.open(bad.mask))
    assert arr.shape == (20, 40) and arr[10, 20] == 255 and arr[0, 0] == 0
    assert "boxes" in splits.report()
    assert_val_rule(splits)


def test_folder_loco_layout_merges_mask_folders(tmp_path: Path) -> None:
    root = tmp_path / "loco"
    for i in range(6):
        img(root / "train" / "good" / f"{i:03d}.png")
    for i in range(2):
        img(root / "validation" / "good" / f"{i:03d}.png")
        img(root / "test" / "good" / f"{i:03d}.png")
        img(root / "test" / "logical" / f"{i:03d}.png")
        mask(root / "ground_truth" / "logical" / f"{i:03d}" / "000.png")
        mask(root / "ground_truth" / "logical" / f"{i:03d}" / "001.png", on=False)
    splits = load_dataset("folder", root)
    assert splits.layout == "mvtec_loco" and len(splits.train) == 6
    assert paths([s for s in splits.val if not s.is_anomalous]) == paths(
        [Sample(p, 0) for p in (root / "validation" / "good").iterdir()])
    merged = [s.mask for s in splits.test if s.is_anomalous]
    assert all(m and m.is_file() and np.asarray(Image.open(m)).max() == 255 for m in merged)
    assert_val_rule(splits)


def test_mixed_sizes_are_noted(tmp_path: Path) -> None:
    make_mvtec(tmp_path / "b")
    img(tmp_path / "b" / "train" / "good" / "big.png", size=(48, 40))
    assert any("mixed image sizes" in n for n in load_dataset("mvtec", tmp_path / "b").notes)


def test_hidden_files_and_macosx_skipped(tmp_path: Path) -> None:
    make_mvtec(tmp_path / "b")
    (tmp_path / "b" / "train" / "good" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "b" / "train" / "good" / "._000.png").write_bytes(b"junk")
    (tmp_path / "b" / "train" / "good" / "notes.txt").write_text("x")
    img(tmp_path / "b" / "train" / "good" / "UPPER.PNG")
    splits = load_dataset("mvtec", tmp_path / "b")
    assert len(splits.train) + 2 == 13


def test_synthetic_anomalies_are_deterministic(tmp_path: Path) -> None:
    from iadbe.data import make_synthetic_anomalies

    normals = [Sample(img(tmp_path / "n" / f"{i}.png", size=(48, 40)), 0) for i in range(3)]
    first, _ = make_synthetic_anomalies(normals, seed=7, out_dir=tmp_path / "a")
    second, _ = make_synthetic_anomalies(normals, seed=7, out_dir=tmp_path / "b")
    for one, two in zip(first, second, strict=True):
        assert np.array_equal(np.asarray(Image.open(one.image)), np.asarray(Image.open(two.image)))
        assert np.array_equal(np.asarray(Image.open(one.mask)), np.asarray(Image.open(two.mask)))
        assert (np.asarray(Image.open(one.mask)) > 0).mean() >= 0.005
    again, _ = make_synthetic_anomalies(normals, seed=7, out_dir=tmp_path / "a")  # cached: manifest reused
    assert again == first


def test_label_named_masks_are_not_kolektor(tmp_path: Path) -> None:
    root = tmp_path / "parts"
    for i in range(4):
        img(root / "good" / f"{i}.png")
    img(root / "defect" / "d0.png")
    mask(root / "masks" / "d0_label.png")
    assert detect_layout(root) == "good_defect"
    assert load_dataset("folder", root).test[-1].mask.name == "d0_label.png"


def test_error_bad_val_fraction(tmp_path: Path) -> None:
    make_mvtec(tmp_path / "b")
    with pytest.raises(DatasetError, match="val_fraction"):
        load_dataset("mvtec", tmp_path / "b", val_fraction=0.0)


# --- errors ----------------------------------------------------------------------------------------

def test_error_missing_root_and_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("folder", tmp_path / "nope")
    with pytest.raises(DatasetError, match="kind"):
        load_dataset("imagenet", tmp_path)


def test_error_unknown_layout_lists_layouts(tmp_path: Path) -> None:
    img(tmp_path / "stuff" / "random" / "a.png")
    with pytest.raises(DatasetError) as info:
        load_dataset("folder", tmp_path / "stuff")
    message = str(info.value)
    for name in ("mvtec", "mvtec3d", "good_defect", "yolo", "kolektor", "my_parts/"):
        assert name in message
    with pytest.raises(DatasetError, match="Layouts understood"):
        detect_layout(tmp_path / "stuff")


def test_error_mask_names_do_not_match(tmp_path: Path) -> None:
    cat = make_mvtec(tmp_path / "b")
    (cat / "ground_truth" / "scratch" / "001_mask.png").rename(cat / "ground_truth" / "scratch" / "x01_mask.png")
    with pytest.raises(DatasetError) as info:
        load_dataset("mvtec", tmp_path / "b")
    assert "001.png" in str(info.value) and "x01_mask.png" in str(info.value)


def test_error_mask_size_mismatch_names_files(tmp_path: Path) -> None:
    root = tmp_path / "parts"
    for i in range(5):
        img(root / "good" / f"{i}.png")
    img(root / "defect" / "d0.png")
    mask(root / "masks" / "d0.png", size=(16, 16))
    with pytest.raises(DatasetError, match=r"d0\.png 32x32 vs mask .*16x16"):
        load_dataset("folder", root)


def test_error_good_defect_mask_missing(tmp_path: Path) -> None:
    root = tmp_path / "parts"
    for i in range(5):
        img(root / "good" / f"{i}.png")
    img(root / "defect" / "d0.png")
    img(root / "defect" / "d1.png")
    mask(root / "masks" / "d0.png")
    with pytest.raises(DatasetError, match="d1.png"):
        load_dataset("folder", root)


def test_error_no_normals_one_image_corrupt(tmp_path: Path) -> None:
    cat = make_mvtec(tmp_path / "a", n_train=0, n_good=0)
    (cat / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no normal images"):
        load_dataset("mvtec", tmp_path / "a")
    img(tmp_path / "one" / "good" / "0.png")
    with pytest.raises(DatasetError, match="only 0.png"):
        load_dataset("folder", tmp_path / "one")
    make_mvtec(tmp_path / "c")
    (tmp_path / "c" / "train" / "good" / "005.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="005.png"):
        load_dataset("mvtec", tmp_path / "c")


def test_error_bad_yolo_label(tmp_path: Path) -> None:
    root = tmp_path / "y"
    for i in range(4):
        img(root / "train" / "images" / f"{i}.jpg")
    (root / "train" / "labels").mkdir(parents=True)
    (root / "train" / "labels" / "0.txt").write_text("0 0.5 0.5\n")
    with pytest.raises(DatasetError, match=r"0\.txt:1"):
        load_dataset("folder", root)


def test_import_is_light() -> None:
    code = "import sys, iadbe.data; from iadbe.data import load_dataset; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# --- anomalib dataset --------------------------------------------------------------------------------

def test_to_anomalib_dataset_and_dataloader(tmp_path: Path) -> None:
    from iadbe.data import make_dataloader, to_anomalib_dataset

    make_mvtec(tmp_path / "b")
    splits = load_dataset("mvtec", tmp_path / "b")
    ds = to_anomalib_dataset(splits.test, split="test")
    assert len(ds) == 9 and ds.task.value == "segmentation" and ds.samples.attrs["task"] == "segmentation"
    assert set(ds.samples.split) == {"test"}
    item = ds[0]
    assert tuple(item.image.shape) == (3, 32, 32) and tuple(item.gt_mask.shape) == (32, 32)
    batch = next(iter(make_dataloader(splits.val, batch_size=4, shuffle=False)))
    assert tuple(batch.image.shape) == (4, 3, 32, 32) and batch.gt_mask.shape[0] == 4
    assert to_anomalib_dataset(splits.train).task.value == "segmentation"
    no_mask = [Sample(splits.test[-1].image, 1, None, "x")]
    assert to_anomalib_dataset(no_mask).task.value == "classification"
    with pytest.raises(DatasetError, match="classification"):
        to_anomalib_dataset(no_mask, task="segmentation")


# --- real shared data -----------------------------------------------------------------------------

needs_tire = pytest.mark.skipif(not (SHARED / "mvtec_3d" / "tire").is_dir(),
                                reason=f"real data absent: {SHARED / 'mvtec_3d' / 'tire'}")
needs_juice = pytest.mark.skipif(not (SHARED / "mvtec_loco" / "juice_bottle").is_dir(),
                                 reason=f"real data absent: {SHARED / 'mvtec_loco' / 'juice_bottle'}")


@pytest.mark.realdata
@needs_tire
def test_real_mvtec3d_tire(tmp_path: Path) -> None:
    splits = load_dataset("mvtec3d", SHARED / "mvtec_3d", "tire", synthetic_dir=tmp_path / "syn")
    assert splits.layout == "mvtec3d" and len(splits.train) == 210
    val_normals = [s for s in splits.val if not s.is_anomalous]
    assert len(val_normals) == 29 and all("validation" in s.image.parts for s in val_normals)
    assert len(synthetic(splits.val)) == 29 and all(s.mask.is_file() for s in synthetic(splits.val))
    assert len(splits.test) == 112 and sum(s.mask is not None for s in splits.test) == 87
    assert sum(not s.is_anomalous for s in splits.test) == 25
    assert_val_rule(splits)


@pytest.mark.realdata
@needs_juice
def test_real_loco_juice_bottle_as_folder(tmp_path: Path) -> None:
    root = SHARED / "mvtec_loco" / "juice_bottle"
    assert detect_layout(root) == "mvtec_loco"
    splits = load_dataset("folder", root, synthetic_dir=tmp_path / "syn")
    # no test/good: validation/good (54) becomes the normal test set, val normals come from train
    assert len(splits.test) == 54 + 142 and sum(s.mask is not None for s in splits.test) == 142
    assert len(splits.train) == 335 - 34 and len(synthetic(splits.val)) == 34
    assert_val_rule(splits)
