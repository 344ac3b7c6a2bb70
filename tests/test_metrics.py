"""Metrics and calibration against reference implementations (scikit-learn) on known data."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from iadbe.calibration import ValidationSet
from iadbe.metrics import (Calibration, auroc, average_precision, calibrate, confusion, evaluate,
                           f1_optimal_threshold, oracle_f1)


def _data(seed=0, n=3000):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    scores = np.round(rng.normal(size=n) * 3, 1) + 50 + labels * 1.5  # raw units far outside [0, 1], with ties
    return scores, labels


def test_auroc_and_ap_match_sklearn_on_raw_scores_with_ties():
    scores, labels = _data()
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_raw_scores_above_one_are_not_squashed():
    # torchmetrics' binary_auroc would sigmoid these to 1.0 and report 0.5
    scores = np.array([70.0, 71.0, 90.0, 95.0])
    labels = np.array([0, 0, 1, 1])
    assert auroc(scores, labels) == 1.0
    metrics = evaluate(scores, labels, Calibration(80, 80, 70, 95, 70, 95))
    assert metrics["image_AUROC"] == 1.0
    assert metrics["image_F1"] == 1.0


def test_f1_threshold_separates_separable_data():
    scores = np.array([1.0, 2.0, 3.0, 10.0, 11.0])
    labels = np.array([0, 0, 0, 1, 1])
    threshold = f1_optimal_threshold(scores, labels)
    assert 3.0 < threshold < 10.0


def test_f1_threshold_needs_both_classes():
    with pytest.raises(ValueError):
        f1_optimal_threshold(np.array([1.0, 2.0]), np.array([0, 0]))


def test_calibration_maps_threshold_to_half_and_clips():
    scores, labels = _data(1, 200)
    calibration = calibrate(ValidationSet(scores, labels.astype(int)))
    normalized = calibration.normalize_scores(np.array([calibration.image_threshold, -1e9, 1e9]))
    assert normalized.tolist() == [0.5, 0.0, 1.0]
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_pixel_metrics_and_pro_on_a_perfect_map():
    masks = np.zeros((3, 32, 32), bool)
    masks[0, 4:10, 4:10] = True
    masks[1, 20:30, 5:8] = True
    maps = masks.astype(np.float32) * 40 + 10  # raw units
    calibration = Calibration(30, 30, 10, 50, 10, 50)
    metrics = evaluate(np.array([50.0, 50.0, 10.0]), np.array([1, 1, 0]), calibration, maps, masks)
    assert metrics["pixel_AUROC"] == 1.0
    assert metrics["pixel_AUPRO"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["pixel_F1"] == 1.0


def test_pro_penalises_missing_one_of_two_regions():
    masks = np.zeros((1, 64, 64), bool)
    masks[0, 2:12, 2:12] = True
    masks[0, 40:60, 40:60] = True
    maps = np.zeros((1, 64, 64), np.float32)
    maps[0, 2:12, 2:12] = 5.0  # only the first region is found
    calibration = Calibration(1, 1, 0, 5, 0, 5)
    metrics = evaluate(np.array([5.0]), np.array([1]), calibration, maps, masks)
    assert metrics["pixel_AUPRO"] < 0.75


def test_decision_rates_and_oracle_f1_on_known_counts():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    labels = np.array([0, 0, 1, 0, 1, 1])
    metrics = evaluate(scores, labels, Calibration(3.5, 3.5, 1, 6, 1, 6))
    # flagged: 4, 5, 6 -> tp 2, fp 1, fn 1
    assert metrics["image_F1"] == pytest.approx(2 / 3)
    assert metrics["image_false_alarm_rate"] == pytest.approx(1 / 3)
    assert metrics["image_miss_rate"] == pytest.approx(1 / 3)
    # best cut: flag 3..6 -> tp 3, fp 1 -> F1 6/7
    assert metrics["image_F1_oracle"] == pytest.approx(6 / 7)
    assert oracle_f1(scores, labels) == pytest.approx(6 / 7)
    assert confusion(scores, labels, 3.5) == {"true_positives": 2, "false_positives": 1, "true_negatives": 2,
                                              "false_negatives": 1}


def test_pixel_f1_counts_the_masks_people_are_shown():
    masks = np.zeros((2, 32, 32), bool)
    masks[0, 10:14, 10:14] = True
    maps = np.zeros((2, 32, 32), np.float32)
    maps[0, 10:14, 10:14] = 3.0  # the defect peaks below the pixel threshold 5 ...
    maps[1, 0:4, 0:4] = 9.0  # ... and a normal image has bright pixels, but it is labelled normal
    metrics = evaluate(np.array([8.0, 1.0]), np.array([1, 0]), Calibration(4, 5, 0, 9, 0, 9), maps, masks)
    # the flagged image shows its peak region (exactly the defect), the normal one shows nothing
    assert metrics["pixel_F1"] == 1.0
    assert metrics["pixel_false_alarm_rate"] == 0.0
    assert metrics["pixel_F1_oracle"] < 1.0  # one threshold on the raw maps cannot separate them
