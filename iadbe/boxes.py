"""Boxes of a detector that gives boxes (YOLO): candidates to boxes (NMS in numpy) and boxes to a box map.

A box detector's inference graph returns, like every detector's, ``(scores (N,), second output)``; its second
output holds candidate boxes ``(N, A, 6)`` (``x0, y0, x1, y1, confidence, class`` in pixels of the model's input;
:func:`iadbe.models.yolo.graph`). Everything after the backend is numpy, the same for torch and OpenVINO:

- :func:`decode_boxes`: confidence floor, non-maximum suppression per class, at most ``max_boxes`` per image;
- :func:`box_map`: per pixel the highest confidence of a box covering it (0 elsewhere). It stands where an
  anomaly detector's map stands: the normalised box map is the prediction's ``anomaly_map``, so the mask at
  a threshold is the union of the boxes above it, and contours, overlays and batch outputs work unchanged.

A detector says it gives boxes through its registry entry (``DetectorSpec.boxes``), never by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: Candidates below this confidence are dropped before NMS (Ultralytics' ``conf`` for validation).
CONFIDENCE_FLOOR = 0.001
#: Intersection over union above which the weaker of two same-class boxes is suppressed (Ultralytics' default).
NMS_IOU = 0.7
MAX_BOXES = 100


@dataclass(frozen=True)
class Box:
    """One detected box, in pixels of the image it was found in (x1/y1 exclusive).

    ``raw_score`` is the detector's confidence; ``score`` the same on the model's calibrated scale (0.5 = its
    threshold), set by the predictor. ``label`` is the class name.
    """

    x0: float
    y0: float
    x1: float
    y1: float
    raw_score: float
    label: str = ""
    score: float | None = None

    def scaled(self, sx: float, sy: float) -> "Box":
        return Box(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy, self.raw_score, self.label, self.score)

    def to_dict(self) -> dict[str, Any]:
        return {"x0": round(self.x0, 2), "y0": round(self.y0, 2), "x1": round(self.x1, 2), "y1": round(self.y1, 2),
                "score": None if self.score is None else round(self.score, 6), "raw_score": round(self.raw_score, 6),
                "label": self.label}


def gives_boxes(config: Any) -> bool:
    """Whether the detector of ``config`` (a :class:`~iadbe.models.DetectorConfig`) gives boxes."""
    from iadbe.models import get_spec

    return bool(get_spec(config.model).boxes)


def class_names(config: Any) -> list[str]:
    return [str(name) for name in config.init_args.get("names", ())]


#: Confidences are compared at this resolution, ties going to the earlier anchor: torch and OpenVINO differ in
#: the last float digits, and two overlapping candidates that close must not swap places between backends.
SCORE_RESOLUTION = 1e-4


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first (confidences compared at
    :data:`SCORE_RESOLUTION`, ties in input order). ``boxes``: (K, 4) x0 y0 x1 y1."""
    order = np.argsort(-np.round(scores / SCORE_RESOLUTION), kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        width = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        height = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        overlap = width * height
        union = areas[best] + areas[rest] - overlap
        order = rest[overlap <= iou * np.maximum(union, 1e-9)]
    return np.asarray(keep, dtype=np.int64)


def decode_boxes(candidates: np.ndarray, names: Sequence[str] = (), size: tuple[int, int] | None = None, *,
                 floor: float = CONFIDENCE_FLOOR, iou: float = NMS_IOU, max_boxes: int = MAX_BOXES) -> list[list[Box]]:
    """Per image, the boxes left after the confidence floor and per-class NMS, best first (model pixels),
    clipped to the input's ``size`` (H, W) where given."""
    out: list[list[Box]] = []
    for image in np.asarray(candidates, dtype=np.float32):
        kept = image[image[:, 4] > floor].copy()
        if size is not None:
            kept[:, [0, 2]] = np.clip(kept[:, [0, 2]], 0, size[1])
            kept[:, [1, 3]] = np.clip(kept[:, [1, 3]], 0, size[0])
        boxes: list[Box] = []
        if len(kept):
            classes = kept[:, 5].astype(np.int64)
            # per-class NMS in one pass: shift each class's boxes apart (Ultralytics' trick)
            offset = classes[:, None].astype(np.float32) * (float(np.abs(kept[:, :4]).max()) + 1.0)
            chosen = nms(kept[:, :4] + offset, kept[:, 4], iou)[:max_boxes]
            for row in kept[chosen]:
                label = names[int(row[5])] if 0 <= int(row[5]) < len(names) else f"class_{int(row[5])}"
                boxes.append(Box(*(float(v) for v in row[:5]), label=label))
        out.append(boxes)
    return out


def box_map(boxes: Sequence[Box], size: tuple[int, int], values: Sequence[float] | None = None) -> np.ndarray:
    """(H, W) float32: per pixel the highest value (default: ``raw_score``) of the boxes covering it, else 0.

    A box covers the pixels whose centres lie inside it (at least one pixel where it is thinner)."""
    height, width = size
    out = np.zeros((height, width), np.float32)
    for box, value in zip(boxes, values if values is not None else [b.raw_score for b in boxes]):
        x0 = int(np.clip(np.floor(box.x0 + 0.5), 0, width - 1))
        y0 = int(np.clip(np.floor(box.y0 + 0.5), 0, height - 1))
        x1 = int(np.clip(np.floor(box.x1 + 0.5), x0 + 1, width))
        y1 = int(np.clip(np.floor(box.y1 + 0.5), y0 + 1, height))
        region = out[y0:y1, x0:x1]
        np.maximum(region, value, out=region)
    return out


def box_maps(candidates: np.ndarray, size: tuple[int, int], names: Sequence[str] = ()) -> np.ndarray:
    """(N, H, W) raw box maps of a batch of candidates at the model's size (evaluation's maps)."""
    return np.stack([box_map(boxes, size) for boxes in decode_boxes(candidates, names, size)]) if len(candidates) else \
        np.zeros((0, *size), np.float32)
