"""Calibration (thresholds, normalisation) and evaluation metrics of the study.

Image and pixel AUROC, AUPR and F1, and pixel PRO (AUPRO, FPR limit 0.3, anomalib's
implementation). Raw model outputs are normalised like anomalib's post-processor:
``clip((x - threshold) / (max - min) + 0.5, 0, 1)``, so the decision threshold is always 0.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PRO_FPR_LIMIT = 0.3


@dataclass(frozen=True)
class Calibration:
    """Thresholds and ranges in raw model units, fitted on validation data only."""

    image_threshold: float
    pixel_threshold: float
    image_min: float
    image_max: float
    pixel_min: float
    pixel_max: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        return cls(**{key: float(data[key]) for key in cls.__dataclass_fields__})

    def normalize_scores(self, scores: np.ndarray) -> np.ndarray:
        return _normalize(scores, self.image_threshold, self.image_min, self.image_max)

    def normalize_maps(self, maps: np.ndarray) -> np.ndarray:
        return _normalize(maps, self.pixel_threshold, self.pixel_min, self.pixel_max)


def _normalize(values: np.ndarray, threshold: float, low: float, high: float) -> np.ndarray:
    span = high - low if high > low else 1.0
    out = (np.asarray(values, dtype=np.float32) - np.float32(threshold)) / np.float32(span) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0)


def f1_optimal_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising F1 (anomalib's F1AdaptiveThreshold), the midpoint to the next score."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("threshold calibration needs both normal and anomalous samples")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_pos = np.cumsum(sorted_labels)
    predicted = np.arange(1, len(scores) + 1)
    # only cut between distinct scores
    distinct = np.r_[np.diff(sorted_scores) != 0, True]
    precision = true_pos / predicted
    recall = true_pos / labels.sum()
    f1 = np.where(distinct, 2 * precision * recall / np.maximum(precision + recall, 1e-12), -1)
    best = int(np.argmax(f1))
    if best + 1 < len(sorted_scores):
        return float((sorted_scores[best] + sorted_scores[best + 1]) / 2)
    return float(sorted_scores[best])


def calibrate(
    val_scores: np.ndarray, val_labels: np.ndarray, val_maps: np.ndarray | None, val_masks: np.ndarray | None
) -> Calibration:
    """Fit thresholds (F1-optimal) and min/max ranges on validation outputs in raw units."""
    image_threshold = f1_optimal_threshold(val_scores, val_labels)
    if val_maps is not None and val_masks is not None and val_masks.any():
        pixels, truth = _subsample_pixels(val_maps, val_masks, limit=2_000_000)
        pixel_threshold = f1_optimal_threshold(pixels, truth)
        pixel_min, pixel_max = float(val_maps.min()), float(val_maps.max())
    else:
        pixel_threshold, pixel_min, pixel_max = image_threshold, float(np.min(val_scores)), float(np.max(val_scores))
    return Calibration(
        image_threshold=image_threshold, pixel_threshold=pixel_threshold,
        image_min=float(np.min(val_scores)), image_max=float(np.max(val_scores)),
        pixel_min=pixel_min, pixel_max=pixel_max,
    )


def _subsample_pixels(maps: np.ndarray, masks: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    flat_maps, flat_masks = maps.ravel(), masks.ravel().astype(bool)
    if flat_maps.size <= limit:
        return flat_maps, flat_masks
    step = int(np.ceil(flat_maps.size / limit))
    return flat_maps[::step], flat_masks[::step]


def evaluate(
    scores: np.ndarray,
    labels: np.ndarray,
    calibration: Calibration,
    maps: np.ndarray | None = None,
    masks: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of raw model outputs; F1 uses the calibrated thresholds.

    Ranking metrics are computed on raw values: the normalised ones are clipped to [0, 1],
    which would tie everything beyond the clip and distort AUROC. Metrics that need both
    classes are left out when the data lacks one.
    """
    import torch
    from torchmetrics.functional.classification import binary_f1_score

    results: dict[str, float] = {}
    labels_t = torch.as_tensor(np.asarray(labels).astype(np.int64))
    scores_t = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    if 0 < int(labels_t.sum()) < len(labels_t):
        results["image_AUROC"] = auroc(scores, labels)
        results["image_AUPR"] = average_precision(scores, labels)
    if int(labels_t.sum()) > 0:
        results["image_F1"] = float(binary_f1_score((scores_t > calibration.image_threshold).long(), labels_t))
    if maps is not None and masks is not None and masks.any() and not masks.all():
        maps_t = torch.as_tensor(np.asarray(maps, dtype=np.float32))
        masks_t = torch.as_tensor(np.asarray(masks).astype(np.int64))
        results["pixel_AUROC"] = auroc(maps, masks)
        results["pixel_AUPR"] = average_precision(maps, masks)
        results["pixel_F1"] = float(binary_f1_score((maps_t.ravel() > calibration.pixel_threshold).long(), masks_t.ravel()))
        results["pixel_AUPRO"] = pixel_aupro(maps_t, masks_t)
    return results


def _ranks_and_truth(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores sorted descending with their labels (float64; raw model units are fine)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    order = np.argsort(-scores, kind="stable")
    return scores[order], labels[order]


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of raw scores, ties counted half (Mann-Whitney U).

    Computed here rather than with torchmetrics' binary_auroc: that one treats values outside
    [0, 1] as logits and squashes them with a sigmoid, so raw scores such as PaDiM's Mahalanobis
    distances (all > 20) collapse to 1.0 and every image ties at AUROC 0.5.
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise average precision, as sklearn and torchmetrics)."""
    sorted_scores, sorted_labels = _ranks_and_truth(scores, labels)
    true_pos = np.cumsum(sorted_labels)
    last_of_tie = np.r_[np.diff(sorted_scores) != 0, True]
    tp, predicted = true_pos[last_of_tie], np.flatnonzero(last_of_tie) + 1
    precision, recall = tp / predicted, tp / max(1, sorted_labels.sum())
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pixel_aupro(maps: Any, masks: Any) -> float:
    """Per-region overlap up to FPR 0.3, normalised (anomalib's AUPRO, fixed since 2.3)."""
    from types import SimpleNamespace

    from anomalib.metrics import AUPRO

    import torch

    # torchmetrics' ROC under AUPRO reads values outside [0, 1] as logits (sigmoid): rescale
    # monotonically to [0, 1] first so raw distances do not all saturate to 1.0
    maps = torch.as_tensor(maps, dtype=torch.float64)
    low, high = maps.min(), maps.max()
    maps = ((maps - low) / (high - low)).float() if high > low else torch.zeros_like(maps, dtype=torch.float32)
    metric = AUPRO(fields=["anomaly_map", "gt_mask"], fpr_limit=PRO_FPR_LIMIT)
    metric.update(SimpleNamespace(anomaly_map=maps, gt_mask=torch.as_tensor(masks).bool()))
    return float(metric.compute())
