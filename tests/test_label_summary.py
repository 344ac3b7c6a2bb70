"""What a dataset offers anomaly and supervised detectors (``iadbe.data.label_summary``), on real data: a YOLO
export with labelled defects in its train split (KolektorSDD) and an MVTec category whose defects are all in
its test split; and the same counts as ``train`` gets from ``supervised_splits``."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATA = DATA if DATA.is_dir() else Path("/work/shared/data")
KOLEKTOR_YOLO = DATA / "kolektorsdd_yolo"
TRANSISTOR = DATA / "mvtec_ad" / "transistor"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Synthetic validation anomalies and YOLO masks go to a fresh home, not to a cache of earlier runs."""
    from iadbe import constants

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path / "home")


@pytest.mark.skipif(not KOLEKTOR_YOLO.is_dir(), reason=f"real data not found at {KOLEKTOR_YOLO} (../shared/data)")
def test_a_yolo_export_with_labelled_training_defects_offers_them_to_supervised_detectors() -> None:
    from iadbe.data import load_dataset
    from iadbe.data.label_summary import summarize_labels
    from iadbe.data.supervised import TRAIN_SHARE, labelled_defects, supervised_splits

    splits = load_dataset("folder", KOLEKTOR_YOLO)
    summary = summarize_labels(splits)
    every = splits.train + splits.val + splits.test
    assert summary.good == sum(not s.is_anomalous for s in every)
    assert summary.defects == summary.labelled == sum(s.is_anomalous for s in every) > 0
    assert summary.label_source == "YOLO labels" and summary.synthetic == 0
    # what train() does for a supervised detector: the validation defects are shared, the test ones never used
    val_defects = len(labelled_defects(splits.val))
    supervised = supervised_splits(splits, seed=0)
    assert summary.supervised_train == len(labelled_defects(supervised.train)) == round(TRAIN_SHARE * val_defects)
    assert summary.supervised_train + summary.supervised_val == val_defects
    assert summary.test_labelled == sum(s.is_anomalous for s in splits.test) > 0
    assert summary.supervised_ready and summary.normal_train == len(splits.train)
    text = summary.text()
    assert text.startswith(f"{summary.good} good images, {summary.defects} defective images (all with YOLO labels")
    assert f"Anomaly detectors train on {summary.normal_train} good images" in text
    assert "weighed as the 13 % of defects their source split holds" in text  # 42 of the train split's 320
    assert (f"can use {summary.supervised_train} labelled defects for training (with the {summary.normal_train} "
            f"good images); {summary.supervised_val} stay for validation and {summary.test_labelled} for the test"
            in text)


@pytest.mark.skipif(not TRANSISTOR.is_dir(), reason=f"real data not found at {TRANSISTOR} (../shared/data)")
def test_an_mvtec_category_has_masks_but_only_in_its_test_split() -> None:
    from iadbe.data import load_dataset
    from iadbe.data.label_summary import summarize_labels

    from iadbe.data.supervised import TEST_SHARE, labelled_defects, supervised_splits

    splits = load_dataset("mvtec", TRANSISTOR)
    summary = summarize_labels(splits)
    in_test = len(labelled_defects(splits.test))
    assert summary.label_source == "masks" and summary.labelled == summary.defects == in_test > 0
    # all labelled defects are test images: half are set aside for a supervised detector, never tested on by it
    assert summary.from_test == round(TEST_SHARE * in_test) and summary.test_labelled == in_test - summary.from_test
    assert summary.supervised_ready and summary.supervised_train + summary.supervised_val == summary.from_test
    supervised = supervised_splits(splits)
    assert not {s.image for s in supervised.test} & {s.image for s in supervised.train + supervised.val}
    assert "set aside for this detector" in supervised.notes[-1]
    assert summary.synthetic == sum(s.is_anomalous for s in splits.val) > 0  # anomaly detectors: synthetic defects
    text = summary.text()
    assert f"{summary.defects} defective images (all with masks)" in text and "synthetic defects" in text
    assert f"all labelled defects are in the test split, so {summary.from_test} of them are set aside" in text
    assert "--protocol kfold" in text


def test_defects_without_masks_are_not_labelled(tmp_path: Path) -> None:
    from test_app import make_parts_dataset

    from iadbe.data import load_dataset
    from iadbe.data.label_summary import summarize_labels

    root = make_parts_dataset(tmp_path / "parts", defects=3)
    for mask in (root / "masks").iterdir():
        mask.unlink()
    (root / "masks").rmdir()
    summary = summarize_labels(load_dataset("folder", root))
    assert (summary.defects, summary.labelled, summary.supervised_ready) == (3, 0, False)
    assert "3 defective images (none labelled: no masks or boxes)" in summary.text()
    assert "this dataset has none" in summary.text()
