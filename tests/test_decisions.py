"""Masks agree with labels (iadbe/decisions.py)."""

import numpy as np

from iadbe.decisions import decision_mask, decision_masks, peak_region


def _blob(shape=(64, 64), centre=(20, 40), height=1.0):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return height * np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / 30.0).astype(np.float32)


def test_an_image_labelled_normal_shows_no_region():
    amap = _blob(height=5.0)
    assert not decision_mask(amap, anomalous=False, threshold=0.5).any()


def test_an_image_labelled_anomalous_shows_its_peak_even_below_the_pixel_threshold():
    amap = _blob(height=0.3) + 0.1
    mask = decision_mask(amap, anomalous=True, threshold=0.5)
    assert mask.any() and mask[20, 40]
    assert 5 < mask.sum() < 0.1 * mask.size  # the blob, not the image


def test_pixels_above_the_threshold_are_the_mask_when_there_are_some():
    amap = _blob(height=2.0)
    np.testing.assert_array_equal(decision_mask(amap, True, 1.0), amap > 1.0)


def test_a_flat_map_still_marks_a_small_region_at_its_maximum():
    amap = np.zeros((64, 64), np.float32)
    mask = peak_region(amap)
    assert mask[0, 0] and 0 < mask.sum() < 30


def test_stacked_decisions_follow_each_label():
    maps = np.stack([_blob(height=0.2), _blob(height=0.2)])
    masks = decision_masks(maps, np.array([True, False]), 0.5)
    assert masks[0].any() and not masks[1].any()
