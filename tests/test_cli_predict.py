"""`iadbe predict` writes binary masks at each image's size and names every file by its path (issue 16)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:  # tests/ as a package or as a plain folder on sys.path
    from .test_model_smoke import dataset, home  # noqa: F401 (fixtures)
except ImportError:
    from test_model_smoke import dataset, home  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def model_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from iadbe.training import train

    out = tmp_path_factory.mktemp("model") / "padim"
    train("padim", "folder", dataset, backbone="tf_efficientnet_lite0", image_size=64, max_epochs=1,
          max_train_images=8, out=out, export=False, seed=0)
    return out


def test_predict_writes_binary_masks_and_the_paths_as_given(model_dir: Path, dataset: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from iadbe.cli import main

    monkeypatch.chdir(tmp_path)
    defect = sorted((dataset / "defect").glob("*.png"))[0]
    good = sorted((dataset / "good").glob("*.png"))[0]
    for folder, source in (("test/cut/rgb", defect), ("test/good/rgb", good)):
        Path(folder).mkdir(parents=True)
        with Image.open(source) as image:  # not the model's 64x64: masks must come back at this size
            image.convert("RGB").resize((90, 60)).save(Path(folder) / "000.png")
    shutil.copy(Path("test/good/rgb/000.png"), "extra.png")
    code = main(["predict", "--model", str(model_dir), "--backend", "torch", "--out", "out", "--threshold", "0.3",
                 "test/cut/rgb/000.png", "test/good/rgb/000.png", "extra.png"])
    assert code == 0, capsys.readouterr().err
    with open("out/predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == ["test/cut/rgb/000.png", "test/good/rgb/000.png", "extra.png"]
    written = [row["mask_file"] for row in rows]
    assert len(set(written)) == 3
    for row in rows:
        for column in ("mask_file", "heatmap_file", "contours_file", "panel_file"):
            assert (Path("out") / row[column]).is_file(), column
        mask = np.asarray(Image.open(Path("out") / row["mask_file"]).convert("L"))
        assert mask.shape == (60, 90)
        assert set(np.unique(mask)) <= {0, 255}
    from iadbe.inference import load_model

    model = load_model(model_dir, backend="torch")
    for row in rows:  # the mask is the library's: the anomaly map above the threshold, at the image's size
        expected = model.predict(row["file"], threshold=0.3)[0].mask
        got = np.asarray(Image.open(Path("out") / row["mask_file"]).convert("L")) == 255
        assert np.array_equal(got, expected)
    assert any(np.asarray(Image.open(Path("out") / row["mask_file"])).max() == 255 for row in rows)


def test_the_library_batch_writes_what_the_cli_and_the_app_hand_out(model_dir: Path, dataset: Path,
                                                                    tmp_path: Path) -> None:
    """One batch function (``iadbe.inference.batch``): a row per input in order, an unreadable file costs only
    its own row, and the zip holds exactly the CSV and the files the rows name."""
    import zipfile

    from iadbe.inference import load_model
    from iadbe.inference.batch import predict_to_files

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    images = sorted((dataset / "defect").glob("*.png"))[:2]
    model = load_model(model_dir, backend="torch")
    (tmp_path / "out" / "overlays").mkdir(parents=True)
    (tmp_path / "out" / "overlays" / "stale_heatmap.png").write_bytes(b"an earlier run's")
    result = predict_to_files(model, [images[0], bad, images[1]], tmp_path / "out", names=["a.png", "b.png", "c.png"],
                              batch_size=3)
    assert [row["file"] for row in result.rows] == ["a.png", "b.png", "c.png"]
    assert [bool(row["error"]) for row in result.rows] == [False, True, False] and len(result.predictions) == 2
    assert result.rows[0]["score"] == pytest.approx(model.predict(images[0])[0].score, abs=1e-6)
    written = {row[column] for row in result.rows if not row["error"]
               for column in ("mask_file", "heatmap_file", "contours_file", "panel_file")}
    assert written == {"masks/0000_a_mask.png", "overlays/0000_a_heatmap.png", "overlays/0000_a_contours.png",
                       "overlays/0000_a_panel.png", "masks/0002_c_mask.png", "overlays/0002_c_heatmap.png",
                       "overlays/0002_c_contours.png", "overlays/0002_c_panel.png"}
    with zipfile.ZipFile(result.archive) as bundle:
        assert set(bundle.namelist()) == written | {"predictions.csv"}  # not the earlier run's file
    with open(result.csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == ["a.png", "b.png", "c.png"] and rows[1]["error"] and not rows[0]["error"]
