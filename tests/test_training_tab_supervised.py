"""The Training tab with labelled defects, through its handler functions: what ``/inspect`` says it found, the
model dropdown with and without labelled defects, YOLO without ultralytics, a tiny ``unet_lite0`` trained
through ``/train`` with the progress bar and the time cap, and shared mode's isolation of uploads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from test_app import make_parts_dataset, zip_folder

pytest.importorskip("gradio")

SIZE = 64


def make_yolo_parts(root: Path, seed: int = 0, good: int = 16, defects: int = 6, test_good: int = 4,
                    test_defects: int = 3) -> Path:
    """A tiny Ultralytics export: ``images/{train,val}`` + ``labels/{train,val}``, bright square defects with
    their boxes, empty label files for good parts (the val split is the test set, as KolektorSDD's)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(90, 160, (SIZE, SIZE, 3)).astype(np.int16)
    for split, goods, bads in (("train", good, defects), ("val", test_good, test_defects)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for index in range(goods + bads):
            image = np.clip(base + rng.integers(-12, 12, base.shape), 0, 255).astype(np.uint8)
            label = ""
            if index >= goods:
                y, x = (int(v) for v in rng.integers(4, SIZE - 20, 2))
                image[y : y + 14, x : x + 14] = 250
                label = f"0 {(x + 7) / SIZE:.6f} {(y + 7) / SIZE:.6f} {14 / SIZE:.6f} {14 / SIZE:.6f}\n"
            Image.fromarray(image).save(root / "images" / split / f"{split}{index:03d}.png")
            (root / "labels" / split / f"{split}{index:03d}.txt").write_text(label)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: ['scratch']\n")
    return root


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iadbe import constants
    from iadbe.app import startup

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path / "home")
    monkeypatch.setattr(constants, "MODEL_STORE", tmp_path / "home" / "models")
    monkeypatch.setattr(constants, "WORKSPACES_DIR", tmp_path / "home" / "workspaces")
    monkeypatch.setattr(constants, "MANIFEST_PATH", tmp_path / "no-manifest.yaml")
    monkeypatch.setattr(constants, "SHARED_MODE", False)
    startup.availability.cache_clear()
    yield
    startup.availability.cache_clear()


@pytest.fixture(scope="module")
def labelled_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_yolo_parts(tmp_path_factory.mktemp("yolo") / "labelled_parts")
    return zip_folder(folder, folder.parent / "labelled_parts.zip")


@pytest.fixture(scope="module")
def unlabelled_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good/ + defect/ without masks: defects, but nothing a supervised detector can learn from."""
    folder = make_parts_dataset(tmp_path_factory.mktemp("unlabelled") / "unlabelled_parts")
    shutil.rmtree(folder / "masks")
    return zip_folder(folder, folder.parent / "unlabelled_parts.zip")


@pytest.fixture(scope="module")
def pooled_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good/ + defect/ + masks/ with no split: every labelled defect is a test image until half are set aside."""
    folder = make_parts_dataset(tmp_path_factory.mktemp("pooled") / "pooled_parts", defects=6)
    return zip_folder(folder, folder.parent / "pooled_parts.zip")


def _request(session: str = "visitor-a") -> SimpleNamespace:
    return SimpleNamespace(session_hash=session)


def _supervised_names() -> set[str]:
    from iadbe.models import all_specs

    return {spec.name for spec in all_specs() if spec.supervised}


def test_inspect_says_what_was_found_for_each_kind_of_detector(labelled_zip: Path) -> None:
    from iadbe.app.training_tab import inspect_dataset

    report = inspect_dataset(str(labelled_zip), "", "", _request())
    # 16 + 6 in the train split: 2 good go to validation (10 %, at least 2), the 6 defects too; a supervised
    # detector trains on round(0.67 * 6) = 4 of them
    assert report.startswith("20 good images, 9 defective images (all with YOLO labels")
    assert "Anomaly detectors train on 14 good images; 2 good and 6 defective images set their threshold " \
           "(validation, weighed as the 27 % of defects their source split holds)" in report  # 6 of 22
    assert "can use 4 labelled defects for training (with the 14 good images); 2 stay for validation" in report
    assert "layout: yolo" in report  # the library's detection report follows


def test_the_dropdown_offers_supervised_detectors_only_with_labelled_defects(labelled_zip: Path,
                                                                           unlabelled_zip: Path) -> None:
    from importlib.util import find_spec

    from iadbe.app.training_tab import offer_models, reset_offer

    supervised = _supervised_names()
    update, note = offer_models(str(labelled_zip), "", "", "patchcore", _request())
    offered = {name for _, name in update["choices"]}
    assert "unet_lite0" in offered and {"padim", "patchcore"} <= offered and update["value"] == "patchcore"
    assert ("yolov8n" in offered) == (find_spec("ultralytics") is not None)
    assert "9 labelled defects" in note and "U-Net Lite0" in note

    update, note = offer_models(str(unlabelled_zip), "", "", "unet_lite0", _request())
    offered = {name for _, name in update["choices"]}
    assert not offered & supervised and "padim" in offered and update["value"] in offered
    assert "only the anomaly detectors are offered" in note

    update, note = reset_offer("unet_lite0")  # a new dataset chosen: anomaly detectors until it is inspected
    assert not {name for _, name in update["choices"]} & supervised and "Inspect" in note


def test_a_folder_with_all_its_labelled_defects_in_test_sets_half_aside_for_supervised_detectors(
        pooled_zip: Path) -> None:
    from iadbe.app.training_tab import inspect_dataset, offer_models

    update, note = offer_models(str(pooled_zip), "", "", "padim", _request())
    assert "unet_lite0" in {name for _, name in update["choices"]}
    report = inspect_dataset(str(pooled_zip), "", "", _request())
    # 6 labelled test defects: 3 set aside (round(0.67 * 3) = 2 to train on, 1 to calibrate), 3 stay in the test
    assert "all labelled defects are in the test split, so 3 of them are set aside" in report
    assert "2 to train on" in report and "1 for validation" in report and "other 3 defects" in report


def test_a_supervised_detector_asked_for_on_data_without_training_defects_says_what_is_missing(
        unlabelled_zip: Path) -> None:
    import gradio as gr

    from iadbe import constants
    from iadbe.app.training_tab import train_model

    with pytest.raises(gr.Error, match="is a supervised detector: it trains on labelled defects"):
        train_model(str(unlabelled_zip), "", "", "unet_lite0", "", SIZE, 1, 0, "no-defects", request=_request(),
                    progress=lambda *args, **kwargs: None)
    assert not any(constants.MODEL_STORE.glob("*"))  # nothing written


def test_yolo_without_ultralytics_is_not_offered_and_training_it_says_how_to_add_it(
        labelled_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    from iadbe.app import training_tab
    from iadbe.models import availability

    real = availability.importlib.util.find_spec
    no_ultralytics = SimpleNamespace(util=SimpleNamespace(
        find_spec=lambda name, *args: None if name == "ultralytics" else real(name, *args)))
    monkeypatch.setattr(availability, "importlib", no_ultralytics)  # this module's view only
    update, note = training_tab.offer_models(str(labelled_zip), "", "", "padim", _request())
    offered = {name for _, name in update["choices"]}
    assert "unet_lite0" in offered and not any(name.startswith("yolo") for name in offered)
    assert "YOLOv8n" in note and "pip install 'iadbe[yolo]'" in note
    with pytest.raises(gr.Error, match=r"YOLOv8n cannot run here: needs the optional package ultralytics: "
                                       r"pip install 'iadbe\[yolo\]'"):
        training_tab.train_model(str(labelled_zip), "", "", "yolov8n", "", SIZE, 1, 0, "no-yolo",
                                 request=_request(), progress=lambda *args, **kwargs: None)


def test_shared_mode_keeps_one_visitors_upload_from_another(labelled_zip: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    from iadbe import constants
    from iadbe.app.training_tab import inspect_dataset, offer_models
    from iadbe.workspaces import identify, open_workspace

    monkeypatch.setattr(constants, "SHARED_MODE", True)
    assert "can use 4 labelled defects" in inspect_dataset(str(labelled_zip), "", "", _request("visitor-a"))
    mine = open_workspace(identify(None, "visitor-a")).uploads_dir
    theirs = open_workspace(identify(None, "visitor-b")).uploads_dir
    extracted = [path for path in mine.rglob("data.yaml")]
    assert len(extracted) == 1 and not (theirs.exists() and any(theirs.iterdir()))
    with pytest.raises(gr.Error, match="Server folders are read only under"):
        offer_models(None, str(extracted[0].parent), "", "padim", _request("visitor-b"))
    with pytest.raises(gr.Error, match="Server folders are read only under"):
        inspect_dataset(None, str(extracted[0].parent), "", _request("visitor-b"))


def _train_through_tab(dataset: Path, model: str, name: str, epochs: int) -> tuple[tuple, list[tuple[float, str]]]:
    """The Training tab's ``train_model`` on ``dataset``; its outputs and the progress calls it made."""
    from iadbe.app.training_tab import train_model

    calls: list[tuple[float, str]] = []
    # false alarms 0: what a browser sends for the field (Gradio 6 sends an empty gr.Number as 0 too)
    outputs = train_model(str(dataset), "", "", model, "", SIZE, epochs, 0, name, 1, 0, request=_request(),
                          progress=lambda fraction, desc="": calls.append((fraction, desc)))
    return outputs, calls


def test_a_tiny_unet_trains_through_the_tab_with_progress_and_its_metrics(labelled_zip: Path) -> None:
    (status, rows, report, gallery, summary, histogram, confusion), calls = _train_through_tab(
        labelled_zip, "unet_lite0", "tab-unet", epochs=2)
    assert status.startswith("Trained **tab-unet**")
    metrics = dict(rows)
    assert {"image_F1", "image_F1_oracle", "pixel_F1"} <= set(metrics)
    assert summary["epochs_trained"] == 2.0 and Path(summary["model_dir"]).is_dir()
    assert "supervised training: 4 of the 6 labelled validation defects moved to training" in report
    calibration = json.loads((Path(summary["model_dir"]) / "iadbe.json").read_text())["calibration"]
    assert calibration["defect_share"] == pytest.approx(6 / 22)  # the train split's, not a stated 0 % rate
    fractions = [fraction for fraction, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(desc.startswith("epoch") or "step" in desc for _, desc in calls), calls
    assert len(gallery) == 4 and all(Path(path).is_file() for path, _ in gallery)
    assert sum(row[1] + row[2] for row in confusion) == 7  # every test image, at the calibrated threshold


def test_a_tiny_yolo_trains_through_the_tab_and_its_examples_have_boxes(labelled_zip: Path) -> None:
    from importlib.util import find_spec

    if find_spec("ultralytics") is None:  # not importorskip: a bare import patches this process (process_state.py)
        pytest.skip("ultralytics is not installed: pip install 'iadbe[yolo]'")
    (status, rows, report, gallery, summary, histogram, confusion), calls = _train_through_tab(
        labelled_zip, "yolov8n", "tab-yolo", epochs=1)
    assert status.startswith("Trained **tab-yolo**")
    metrics = dict(rows)
    assert {"image_F1", "image_F1_oracle", "image_AUROC"} <= set(metrics) and "pixel_F1" not in metrics
    assert [fraction for fraction, _ in calls][-1] == 1.0
    assert len(gallery) == 4 and all(Path(path).is_file() for path, _ in gallery)
    # NMS keeps at least the best candidate of every image; those above the threshold are drawn on the panel
    assert all(" boxes drawn" in caption for _, caption in gallery), gallery
