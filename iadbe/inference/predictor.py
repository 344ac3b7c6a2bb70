"""A loaded model and its predictions.

Scores and maps are normalised with the model's calibration so the decision threshold is 0.5;
a user threshold in [0, 1] is applied afterwards (``Prediction.with_threshold``) without
re-running the model. A false-alarm rate on good parts (``predict(false_alarm_rate=...)``) moves the
calibrated point itself, for that call only (the loaded model is shared between callers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from iadbe.errors import SettingsError
from iadbe.images import ImageInput, load_image, to_batch

DEFAULT_THRESHOLD = 0.5


def check_threshold(threshold: float | None) -> float:
    if threshold is None:
        return DEFAULT_THRESHOLD
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise SettingsError(f"threshold must be a number in [0, 1], got {threshold!r}") from None
    if not 0.0 <= value <= 1.0 or value != value:
        raise SettingsError(f"threshold must be in [0, 1], got {threshold!r}")
    return value


@dataclass(frozen=True)
class Prediction:
    """The result for one image. ``anomaly_map`` is normalised (0.5 = threshold) at input resolution."""

    name: str
    image: np.ndarray = field(repr=False)  # RGB uint8 (H, W, 3)
    score: float
    raw_score: float
    anomaly_map: np.ndarray | None = field(repr=False)  # float32 (H, W) in [0, 1]; None: image-level model
    threshold: float
    backend: str
    device: str
    model: str
    timings_ms: dict[str, float]
    #: share (%) of the validation normals scoring at or below this image; None for older models
    normal_percentile: float | None = None
    #: inference precision the backend ran at (f32, bf16, f16; iadbe/precision.py)
    precision: str = "f32"
    #: a box detector's boxes (:class:`iadbe.boxes.Box`, image pixels, ``score`` normalised like ``score``),
    #: every one NMS kept, best first; ``shown_boxes`` are those above the threshold. () for anomaly detectors.
    boxes: tuple[Any, ...] = ()

    @property
    def shown_boxes(self) -> tuple[Any, ...]:
        """The boxes above the threshold (those drawn and counted)."""
        return tuple(box for box in self.boxes if box.score is not None and box.score > self.threshold)

    @property
    def label(self) -> bool:
        """True = anomalous."""
        return self.score > self.threshold

    @property
    def label_text(self) -> str:
        return "anomalous" if self.label else "normal"

    @property
    def mask(self) -> np.ndarray | None:
        """The region shown: empty when the label is normal, never empty when it is anomalous
        (:func:`iadbe.decisions.decision_mask`)."""
        from iadbe.decisions import decision_mask

        return None if self.anomaly_map is None else decision_mask(self.anomaly_map, self.label, self.threshold)

    def box_details(self) -> dict[str, Any]:
        """``{"boxes": [...]}``: a box detector's boxes above the threshold as JSON; {} for anomaly detectors."""
        return {"boxes": [box.to_dict() for box in self.shown_boxes]} if self.boxes else {}

    def with_threshold(self, threshold: float) -> "Prediction":
        return replace(self, threshold=check_threshold(threshold))

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.name, "score": round(self.score, 6), "label": self.label_text,
            "threshold": self.threshold, "backend": self.backend, "device": self.device, "precision": self.precision,
            "ms": round(sum(self.timings_ms.values()), 2), **{f"{k}_ms": round(v, 2) for k, v in self.timings_ms.items()},
            "normal_percentile": _round(self.normal_percentile),
            **({"boxes": len(self.shown_boxes)} if self.boxes else {}),
        }


@dataclass
class LoadedModel:
    """A model ready to predict, on one backend."""

    model_dir: Path
    meta: dict[str, Any]
    config: Any  # DetectorConfig
    calibration: Any  # Calibration
    backend: Any  # Backend

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.model_dir.name)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def device(self) -> str:
        return self.backend.device

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        threshold: float | None = None,
        batch_size: int = 8,
        names: Sequence[str] | None = None,
        false_alarm_rate: float | None = None,
    ) -> list[Prediction]:
        """Predict one image or many (a list); returns one :class:`Prediction` per image, in order.

        ``false_alarm_rate``: the share of good parts that may be flagged (e.g. 0.01), read off the
        validation normals; it replaces the calibrated point for this call, and ``threshold`` (0.5 =
        that point) still applies on top of it."""
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        threshold = check_threshold(threshold)
        calibration = self.calibration.with_false_alarm_rate(false_alarm_rate)
        if not 1 <= batch_size <= 256:
            raise SettingsError(f"batch size must be between 1 and 256, got {batch_size}")
        labels = list(names) if names is not None else [_name_of(item, i) for i, item in enumerate(items)]
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            results.extend(self._predict_batch(chunk, labels[start : start + batch_size], threshold, calibration))
        return results

    def _predict_batch(self, items: Iterable[ImageInput], names: list[str], threshold: float,
                       calibration: Any) -> list[Prediction]:
        begin = time.perf_counter()
        rgbs = [load_image(item, name) for item, name in zip(items, names)]
        batch = to_batch(rgbs, self.config.image_size)
        prepared = time.perf_counter()
        raw_scores, raw_maps = self.backend.run(batch)
        ran = time.perf_counter()
        scores = calibration.normalize_scores(raw_scores)
        maps = calibration.normalize_maps(raw_maps) if self.config.segmentation else None
        found = self._boxes(raw_maps, [rgb.shape[:2] for rgb in rgbs], calibration)
        outputs = []
        for index, rgb in enumerate(rgbs):
            amap = None if maps is None else _resize_map(maps[index], rgb.shape[:2])
            if found is not None:
                amap = _box_map(found[index], rgb.shape[:2])
            outputs.append((rgb, amap))
        done = time.perf_counter()
        count = len(rgbs)
        timings = {
            "preprocess": 1000 * (prepared - begin) / count,
            "model": 1000 * (ran - prepared) / count,
            "postprocess": 1000 * (done - ran) / count,
        }
        return [
            Prediction(
                name=name, image=rgb, score=float(scores[i]), raw_score=float(raw_scores[i]), anomaly_map=amap,
                threshold=threshold, backend=self.backend.name, device=self.backend.device, model=self.name,
                precision=self.backend.precision,
                timings_ms=dict(timings), normal_percentile=calibration.normal_percentile(raw_scores[i]),
                boxes=() if found is None else tuple(found[i]),
            )
            for i, (name, (rgb, amap)) in enumerate(zip(names, outputs))
        ]


    def _boxes(self, candidates: np.ndarray, sizes: list[tuple[int, int]], calibration: Any) -> list[list[Any]] | None:
        """A box detector's boxes per image (NMS in numpy, :mod:`iadbe.boxes`), in image pixels with their
        normalised scores; None for an anomaly detector."""
        from iadbe import boxes

        if not boxes.gives_boxes(self.config):
            return None
        height, width = self.config.image_size
        out = []
        for found, (h, w) in zip(boxes.decode_boxes(candidates, boxes.class_names(self.config), (height, width)), sizes):
            normalised = calibration.normalize_scores(np.asarray([b.raw_score for b in found], np.float32))
            out.append([replace(b.scaled(w / width, h / height), score=float(v)) for b, v in zip(found, normalised)])
        return out


def _box_map(found: list[Any], size: tuple[int, int]) -> np.ndarray:
    """The map of a box detector: per pixel the best normalised score of a box over it (0 elsewhere)."""
    from iadbe.boxes import box_map

    return box_map(found, size, [b.score for b in found])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _resize_map(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if amap.shape == size:
        return amap.astype(np.float32, copy=False)
    return cv2.resize(amap.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _name_of(item: Any, index: int) -> str:
    if isinstance(item, (str, Path)):
        return Path(item).name
    filename = getattr(item, "filename", None)
    return Path(filename).name if filename else f"image_{index}"
