"""Rendering a prediction and writing its views (the app's /predict returns these files)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from iadbe.errors import StoreError
from iadbe.inference.predictor import Prediction
from iadbe.render import render_prediction, save_views


def _prediction() -> Prediction:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    amap = np.zeros((120, 90), np.float32)
    amap[30:60, 20:50] = 0.9
    return Prediction(name="part", image=image, score=0.8, raw_score=3.0, anomaly_map=amap, threshold=0.5,
                      backend="openvino", device="CPU", model="m", timings_ms={})


def test_views_are_written_losslessly_in_parallel(tmp_path):
    views = render_prediction(_prediction(), 0.5)
    assert set(views) == {"original", "heatmap", "mask", "contours", "panel"}
    paths = save_views(views, tmp_path / "out", "view")
    assert set(paths) == set(views)
    for kind, path in paths.items():
        assert path.name == f"view_{kind}.png"
        np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1], views[kind])
    assert not (views["heatmap"] == views["original"]).all()  # the overlay drew something


def test_views_without_the_panel():
    assert set(render_prediction(_prediction(), 0.5, with_panel=False)) == {"original", "heatmap", "mask", "contours"}


def test_a_view_that_cannot_be_written_is_a_clear_error(tmp_path):
    folder = tmp_path / "out"
    (folder / "view_mask.png").mkdir(parents=True)  # a folder where the file should go (works as root too)
    with pytest.raises(StoreError, match="could not write .*view_mask.png"):
        save_views(render_prediction(_prediction(), with_panel=False), folder, "view")
