"""Evaluation metrics of the study, and the decision metrics an inspector needs.

Image and pixel AUROC, AUPR and PRO (AUPRO, FPR limit 0.3, anomalib's implementation) rank; F1, the
false-alarm rate and the miss rate judge the *decisions* at the calibrated thresholds
(:mod:`iadbe.calibration`), beside the oracle F1: the best threshold chosen on the test set itself, which
is how the IADBE study reported F1. Pixel decisions are the masks people are shown
(:func:`iadbe.decisions.decision_masks`): none on an image labelled normal, at least the peak's region on
one labelled anomalous.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iadbe.calibration import Calibration, calibrate, f1_optimal_threshold  # noqa: F401 (the old home)

PRO_FPR_LIMIT = 0.3
#: Pixels sampled for the pixel oracle F1 (every k-th pixel beyond this).
_ORACLE_PIXEL_LIMIT = 4_000_000


def evaluate(
    scores: np.ndarray,
    labels: np.ndarray,
    calibration: Calibration,
    maps: np.ndarray | None = None,
    masks: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of raw model outputs (module docstring); decisions use the calibrated thresholds.

    Ranking metrics are computed on raw values: the normalised ones are clipped to [0, 1], which would
    tie everything beyond the clip and distort AUROC. Metrics that need both classes are left out when the
    data lacks one.
    """
    from iadbe.decisions import decision_masks

    results: dict[str, float] = {}
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    flagged = scores > calibration.image_threshold
    if labels.any() and not labels.all():
        results["image_AUROC"] = auroc(scores, labels)
        results["image_AUPR"] = average_precision(scores, labels)
    results.update(decision_rates("image", flagged, labels, oracle=scores))
    if maps is not None and masks is not None and masks.any() and not masks.all():
        truth = np.asarray(masks).astype(bool)
        results["pixel_AUROC"] = auroc(maps, truth)
        results["pixel_AUPR"] = average_precision(maps, truth)
        shown = decision_masks(np.asarray(maps), flagged, calibration.pixel_threshold)
        results.update(decision_rates("pixel", shown.ravel(), truth.ravel(), oracle=_every_kth(maps, truth)))
        results["pixel_AUPRO"] = pixel_aupro(maps, truth)
    return results


def decision_rates(level: str, decided: np.ndarray, truth: np.ndarray,
                   oracle: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """``<level>_F1`` of the decisions, their false-alarm and miss rates, and the oracle F1 of ``oracle``
    (the raw values, or (values, truth) when they are a sample). Rates need the class they divide by."""
    decided, truth = np.asarray(decided, bool).ravel(), np.asarray(truth, bool).ravel()
    out: dict[str, float] = {}
    if truth.any():
        out[f"{level}_F1"] = f1_score(decided, truth)
        out[f"{level}_miss_rate"] = float((~decided & truth).sum() / truth.sum())
        if oracle is not None:
            values, sample_truth = oracle if isinstance(oracle, tuple) else (oracle, truth)
            out[f"{level}_F1_oracle"] = oracle_f1(values, sample_truth)
    if not truth.all():
        out[f"{level}_false_alarm_rate"] = float((decided & ~truth).sum() / (~truth).sum())
    return out


def f1_score(decided: np.ndarray, truth: np.ndarray) -> float:
    """F1 of boolean decisions (0 when there is nothing to find and nothing was found)."""
    decided, truth = np.asarray(decided, bool).ravel(), np.asarray(truth, bool).ravel()
    true_pos = int((decided & truth).sum())
    wrong = int((decided ^ truth).sum())
    return 2 * true_pos / (2 * true_pos + wrong) if true_pos else 0.0


def oracle_f1(values: np.ndarray, truth: np.ndarray) -> float:
    """The best F1 any threshold on ``values`` reaches against ``truth`` (cuts only between distinct values)."""
    sorted_values, sorted_truth = _ranks_and_truth(values, truth)
    positives = int(sorted_truth.sum())
    if positives == 0:
        return 0.0
    true_pos = np.cumsum(sorted_truth)
    flagged = np.arange(1, len(sorted_values) + 1)
    distinct = np.r_[np.diff(sorted_values) != 0, True]
    return float(np.max(np.where(distinct, 2 * true_pos / (flagged + positives), 0.0)))


def confusion(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, int]:
    """Image decision counts at ``threshold``: true/false positives and negatives (positive = anomalous)."""
    flagged = np.asarray(scores, dtype=np.float64).ravel() > threshold
    truth = np.asarray(labels).astype(bool).ravel()
    return {"true_positives": int((flagged & truth).sum()), "false_positives": int((flagged & ~truth).sum()),
            "true_negatives": int((~flagged & ~truth).sum()), "false_negatives": int((~flagged & truth).sum())}


def _every_kth(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat_maps, flat_masks = np.asarray(maps).ravel(), np.asarray(masks).astype(bool).ravel()
    step = max(1, -(-flat_maps.size // _ORACLE_PIXEL_LIMIT))
    return flat_maps[::step], flat_masks[::step]


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
