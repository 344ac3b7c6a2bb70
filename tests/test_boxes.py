"""Boxes after the backend (:mod:`iadbe.boxes`): NMS in numpy, clipping, box maps, what a prediction shows."""

from __future__ import annotations

import numpy as np

from iadbe.boxes import Box, box_map, decode_boxes, nms


def _candidates(rows: list[tuple[float, ...]], anchors: int = 8) -> np.ndarray:
    """One image's candidates (A, 6), padded with zero-confidence anchors."""
    out = np.zeros((1, anchors, 6), np.float32)
    out[0, : len(rows)] = rows
    return out


def test_nms_keeps_the_best_of_overlapping_boxes_of_one_class() -> None:
    boxes = np.asarray([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    assert nms(boxes, np.asarray([0.5, 0.9, 0.7], np.float32), iou=0.5).tolist() == [1, 2]
    assert nms(boxes, np.asarray([0.5, 0.9, 0.7], np.float32), iou=0.95).tolist() == [1, 2, 0]


def test_decode_boxes_per_class_nms_floor_clipping_and_names() -> None:
    rows = [(0, 0, 10, 10, 0.8, 0), (0, 0, 10, 11, 0.6, 0), (0, 0, 10, 11, 0.7, 1),
            (-5, 20, 300, 40, 0.3, 0), (5, 5, 6, 6, 0.0005, 0)]
    (found,) = decode_boxes(_candidates(rows), ["scratch", "dent"], (64, 128))
    assert [(b.label, round(b.raw_score, 2)) for b in found] == [("scratch", 0.8), ("dent", 0.7), ("scratch", 0.3)]
    assert (found[2].x0, found[2].x1) == (0.0, 128.0)  # clipped to the input
    assert decode_boxes(_candidates(rows), ["scratch", "dent"], max_boxes=1)[0][0].raw_score == found[0].raw_score
    assert decode_boxes(np.zeros((2, 5, 6), np.float32)) == [[], []]


def test_box_map_holds_the_best_box_over_each_pixel() -> None:
    boxes = [Box(2, 2, 6, 6, 0.4), Box(4, 4, 8, 5, 0.9), Box(9.6, 0, 9.9, 1, 0.2)]
    amap = box_map(boxes, (10, 10))
    assert amap[3, 3] == np.float32(0.4) and amap[4, 5] == np.float32(0.9) and amap[8, 8] == 0
    assert amap[0, 9] == np.float32(0.2)  # a box thinner than a pixel still covers one
    assert box_map(boxes, (10, 10), [1.0, 1.0, 1.0]).sum() == 16 + 4 - 2 + 1  # the union: two pixels shared


def test_a_prediction_shows_the_boxes_above_its_threshold() -> None:
    from iadbe.inference.predictor import Prediction

    boxes = (Box(0, 0, 4, 4, 0.9, "defect", 0.8), Box(5, 5, 9, 9, 0.1, "defect", 0.3))
    prediction = Prediction(name="a.png", image=np.zeros((10, 10, 3), np.uint8), score=0.8, raw_score=0.9,
                            anomaly_map=box_map(boxes, (10, 10), [0.8, 0.3]), threshold=0.5, backend="torch",
                            device="cpu", model="m", timings_ms={}, boxes=boxes)
    assert prediction.shown_boxes == boxes[:1] and prediction.summary()["boxes"] == 1
    assert len(prediction.with_threshold(0.2).shown_boxes) == 2
    assert prediction.mask.sum() == 16  # the mask at the threshold is the union of the boxes above it


def test_the_contours_view_of_a_box_detector_draws_its_boxes_above_the_threshold() -> None:
    from iadbe.inference.predictor import Prediction
    from iadbe.render import YELLOW, render_prediction

    boxes = (Box(10, 10, 40, 30, 0.9, "defect", 0.8), Box(50, 40, 70, 60, 0.1, "defect", 0.3))
    image = np.full((80, 100, 3), 90, np.uint8)
    prediction = Prediction(name="a.png", image=image, score=0.8, raw_score=0.9,
                            anomaly_map=box_map(boxes, (80, 100), [0.8, 0.3]), threshold=0.5, backend="torch",
                            device="cpu", model="m", timings_ms={}, boxes=boxes)
    drawn = render_prediction(prediction, with_panel=False)["contours"]
    yellow = np.all(drawn == YELLOW, axis=-1)
    assert yellow[29, 10:40].all() and not yellow[45:60, 50:70].any()  # the shown box only
    both = render_prediction(prediction, threshold=0.2, with_panel=False)["contours"]
    assert np.all(both == YELLOW, axis=-1)[59, 50:70].all()
