"""Rendering a prediction and writing its views (the app's /predict returns these files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from iadbe.errors import SettingsError, StoreError
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


def test_display_views_are_jpeg_close_to_the_drawing(tmp_path):
    """The app's views: JPEG (quality 95, full colour resolution) within a few grey levels of the drawn
    picture, on a photograph."""
    from skimage import data

    photo = cv2.resize(data.astronaut(), (90, 120), interpolation=cv2.INTER_AREA)
    views = render_prediction(dataclasses.replace(_prediction(), image=photo), 0.5, with_panel=False)
    paths = save_views(views, tmp_path / "out", "view", fmt="jpeg")
    for kind, path in paths.items():
        assert path.name == f"view_{kind}.jpg" and path.read_bytes()[:3] == b"\xff\xd8\xff"
        decoded = cv2.imread(str(path))[..., ::-1].astype(np.float32)
        error = np.abs(decoded - views[kind])
        assert error.mean() < 3.0 and error.max() < 64, kind


def test_unknown_view_format_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="view format must be one of png, jpeg"):
        save_views(render_prediction(_prediction(), with_panel=False), tmp_path, "view", fmt="webp")


def test_views_without_the_panel():
    assert set(render_prediction(_prediction(), 0.5, with_panel=False)) == {"original", "heatmap", "mask", "contours"}


def test_a_view_that_cannot_be_written_is_a_clear_error(tmp_path):
    folder = tmp_path / "out"
    (folder / "view_mask.png").mkdir(parents=True)  # a folder where the file should go (works as root too)
    with pytest.raises(StoreError, match="could not write .*view_mask.png"):
        save_views(render_prediction(_prediction(), with_panel=False), folder, "view")


def test_the_apps_views_of_a_good_part_share_one_file_and_a_defects_do_not(tmp_path, monkeypatch):
    """Issue 17: a good part's mask and contours views are its original picture, written once."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from iadbe.app.inference_tab import _view_files

    from skimage import data

    kinds = ("original", "heatmap", "mask", "contours")
    photo = cv2.resize(data.astronaut(), (90, 120), interpolation=cv2.INTER_AREA)
    defect = dataclasses.replace(_prediction(), image=photo)
    good = dataclasses.replace(defect, score=0.2)
    assert not good.label and not good.mask.any() and defect.mask.any()
    shared = _view_files(render_prediction(good, 0.5, with_panel=False), kinds)
    assert shared[0] == shared[2] == shared[3] != shared[1]
    assert len(list(Path(shared[0]).parent.iterdir())) == 2
    apart = _view_files(render_prediction(defect, 0.5, with_panel=False), kinds)
    assert len(set(apart)) == 4
    for kind, path in zip(kinds, apart, strict=True):  # each file shows its own view
        drawn = render_prediction(defect, 0.5, with_panel=False)[kind].astype(np.float32)
        assert np.abs(cv2.imread(path)[..., ::-1] - drawn).mean() < 3.0, kind


@pytest.mark.parametrize("opacity", [0.0, 0.3, 0.5, 1.0])
def test_overlays_blend_to_the_nearest_grey_level_and_only_where_flagged(opacity):
    """OpenCV's weighted sum draws the overlays (issue 17): within one grey level of the exact blend
    (ties may round either way), exact at opacity 0 and 1, and the mask leaves unflagged pixels alone."""
    from iadbe.render import RED, colorize, heatmap_overlay, mask_overlay

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    amap = rng.random((64, 48)).astype(np.float32)
    mask = amap > 0.7

    def exact(colour):
        return image.astype(np.float64) * (1 - opacity) + np.asarray(colour, np.float64) * opacity

    heat = heatmap_overlay(image, amap, opacity)
    flagged = mask_overlay(image, mask, opacity)
    assert heat.dtype == flagged.dtype == np.uint8 and heat.flags.c_contiguous
    tolerance = 0 if opacity in (0.0, 1.0) else 1
    assert np.abs(heat - exact(colorize(amap))).max() <= tolerance
    assert np.abs(flagged[mask] - exact(RED)[mask]).max() <= tolerance
    np.testing.assert_array_equal(flagged[~mask], image[~mask])
    np.testing.assert_array_equal(mask_overlay(image, np.zeros_like(mask), opacity), image)


def test_colorize_keeps_opencvs_jet_colours():
    from iadbe.render import colorize

    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None, :].repeat(3, axis=0)
    scaled = np.clip(ramp * 255.0 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(colorize(ramp), cv2.applyColorMap(scaled, cv2.COLORMAP_JET)[..., ::-1])
