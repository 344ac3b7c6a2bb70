"""The calibration rule on score distributions whose answer is known (iadbe/calibration.py)."""

import numpy as np
import pytest

from iadbe.calibration import (
    DEFAULT_FALSE_ALARM_RATE,
    MAX_FALSE_ALARM_RATE,
    RULE,
    Calibration,
    ValidationSet,
    calibrate,
    check_false_alarm_rate,
    table_threshold,
    tail_threshold,
)
from iadbe.errors import SettingsError


def _binomial_band(rate: float, n: int, sigmas: float = 4.0) -> tuple[float, float]:
    spread = sigmas * np.sqrt(rate * (1 - rate) / n)
    return rate - spread, rate + spread


@pytest.mark.parametrize("rate", [0.05, 0.01, 0.001])
def test_false_alarm_rate_on_fresh_normals_matches_the_requested_rate(rate):
    rng = np.random.default_rng(0)
    fresh = rng.normal(size=400_000)
    observed = []
    for _ in range(40):  # forty calibrations on 2,000 normals each: the estimator's own error averages out
        threshold = tail_threshold(rng.normal(size=2000), rate)
        observed.append(float((fresh > threshold).mean()))
    low, high = _binomial_band(rate, 400_000)
    mean = float(np.mean(observed))
    # the threshold is estimated from 2,000 values: allow its sampling error (a few % relative) on top
    assert low * 0.85 <= mean <= high * 1.15, (rate, mean)


def test_tail_threshold_of_a_small_sample_extrapolates_beyond_its_maximum():
    rng = np.random.default_rng(1)
    sample = rng.normal(10.0, 2.0, size=25)
    threshold = tail_threshold(sample, 0.001)
    assert threshold > sample.max()  # an empirical quantile would stop at the maximum
    assert threshold == pytest.approx(10.0 + 3.09 * 2.0, abs=2.5)


def test_tail_threshold_is_not_dragged_by_one_odd_good_part():
    rng = np.random.default_rng(2)
    sample = rng.normal(0.0, 1.0, size=40)
    with_outlier = np.r_[sample, 60.0]
    assert abs(tail_threshold(with_outlier, 0.01) - tail_threshold(sample, 0.01)) < 0.5
    mean_sd = with_outlier.mean() + 2.33 * with_outlier.std()
    assert mean_sd > tail_threshold(with_outlier, 0.01) + 5


def _validation(seed: int = 0, normals: int = 60, shift: float = 4.0, real: int = 0, synthetic: int = 30,
                synthetic_shift: float = 30.0) -> ValidationSet:
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(size=normals), rng.normal(shift, 1, size=real), rng.normal(synthetic_shift, 1,
                                                                                           size=synthetic)]
    labels = np.r_[np.zeros(normals, int), np.ones(real + synthetic, int)]
    is_synthetic = np.r_[np.zeros(normals + real, bool), np.ones(synthetic, bool)]
    return ValidationSet(scores, labels, synthetic=is_synthetic)


def test_conspicuous_synthetic_anomalies_do_not_set_the_threshold():
    validation = _validation()
    calibration = calibrate(validation)
    # the old rule put the threshold between the normals and the synthetic anomalies (around 15):
    # every real defect at +4 sigma would have come out normal
    assert calibration.image_threshold < 3.5
    assert calibration.rule == RULE and calibration.false_alarm_rate == DEFAULT_FALSE_ALARM_RATE
    real_defects = np.random.default_rng(5).normal(4.0, 1.0, size=2000)
    assert (real_defects > calibration.image_threshold).mean() > 0.8


def test_real_validation_defects_lower_the_threshold_but_not_below_the_cap():
    subtle = _validation(real=20, shift=1.0)
    calibration = calibrate(subtle)
    plain = calibrate(_validation(real=0, shift=1.0))
    assert calibration.image_threshold < plain.image_threshold
    floor = tail_threshold(np.sort(subtle.scores[subtle.normal]), MAX_FALSE_ALARM_RATE)
    assert calibration.image_threshold >= floor - 1e-9
    assert any("real validation defects" in note for note in calibration.notes)
    defects = subtle.scores[subtle.real_defects]
    assert (defects > calibration.image_threshold).mean() >= 0.5


def test_real_defects_the_threshold_already_catches_leave_it_alone():
    clear = _validation(real=20, shift=6.0)
    assert calibrate(clear).image_threshold == calibrate(_validation(real=0, shift=6.0)).image_threshold


def test_a_stricter_rate_gives_a_higher_threshold_and_round_trips():
    validation = _validation()
    strict = calibrate(validation, false_alarm_rate=0.001)
    loose = calibrate(validation, false_alarm_rate=0.05)
    assert strict.image_threshold > loose.image_threshold
    moved = loose.with_false_alarm_rate(0.001)
    assert moved.image_threshold == pytest.approx(strict.image_threshold)
    assert moved.image_min == loose.image_min and moved.image_max == loose.image_max
    assert Calibration.from_dict(strict.to_dict()) == strict


def test_pixel_threshold_reads_the_normals_pixels():
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(20, 64, 64)).astype(np.float32)
    scores = maps.reshape(20, -1).max(axis=1)
    calibration = calibrate(ValidationSet(scores, np.zeros(20, int), maps, None), pixel_false_alarm_rate=0.01)
    assert calibration.pixel_threshold == pytest.approx(2.326, abs=0.05)
    assert table_threshold(calibration.pixel_tail, 0.001) == pytest.approx(3.09, abs=0.08)
    assert calibration.with_false_alarm_rate(pixel_rate=0.001).pixel_threshold > calibration.pixel_threshold


def test_a_detectors_default_pixel_rate_sets_the_pixel_threshold_unless_the_user_states_one():
    from iadbe.models import get_spec

    rng = np.random.default_rng(5)
    maps = rng.normal(size=(20, 64, 64)).astype(np.float32)
    validation = ValidationSet(maps.reshape(20, -1).max(axis=1), np.zeros(20, int), maps, None)
    common = calibrate(validation)
    strict = calibrate(validation, default_pixel_rate=0.001)
    assert strict.pixel_false_alarm_rate == 0.001 and common.pixel_false_alarm_rate == 0.01
    assert strict.pixel_threshold == pytest.approx(3.09, abs=0.08)
    assert strict.pixel_threshold > common.pixel_threshold
    assert calibrate(validation, pixel_false_alarm_rate=0.01, default_pixel_rate=0.001) == common  # the user wins
    assert strict.image_threshold == common.image_threshold  # only the pixel threshold moves
    assert get_spec("patchcore").pixel_false_alarm_rate == 0.001 and get_spec("padim").pixel_false_alarm_rate is None
    with pytest.raises(SettingsError, match="default pixel false-alarm rate"):
        calibrate(validation, default_pixel_rate=2.0)


def test_normal_percentile_says_where_a_score_sits_among_good_parts():
    calibration = calibrate(ValidationSet(np.arange(1.0, 101.0), np.zeros(100, int)))
    assert calibration.normal_percentile(50.0) == 50.0
    assert calibration.normal_percentile(1000.0) == 100.0
    assert calibration.normal_percentile(0.0) == 0.0


def test_old_model_files_load_and_refuse_a_new_rate_clearly():
    old = Calibration.from_dict({"image_threshold": 1, "pixel_threshold": 1, "image_min": 0, "image_max": 2,
                                 "pixel_min": 0, "pixel_max": 2})
    assert old.normal_percentile(1.0) is None
    assert old.with_false_alarm_rate(None) is old
    with pytest.raises(SettingsError, match="retrain"):
        old.with_false_alarm_rate(0.01)


@pytest.mark.parametrize("bad", [0, -0.1, 0.9, "x", float("nan")])
def test_false_alarm_rate_is_checked(bad):
    with pytest.raises(SettingsError, match="false-alarm rate"):
        check_false_alarm_rate(bad)


def test_real_defect_masks_set_the_pixel_threshold_that_outlines_them():
    rng = np.random.default_rng(4)
    normals = rng.normal(size=(10, 32, 32)).astype(np.float32)
    defects = rng.normal(size=(5, 32, 32)).astype(np.float32)
    masks = np.zeros((15, 32, 32), bool)
    masks[10:, 10:13, 10:13] = True
    defects[:, 10:13, 10:13] += 5.0  # thin defects, far brighter than any good pixel
    maps = np.concatenate([normals, defects])
    scores = maps.reshape(15, -1).max(axis=1)
    labels = np.r_[np.zeros(10, int), np.ones(5, int)]
    calibration = calibrate(ValidationSet(scores, labels, maps, masks, np.zeros(15, bool)))
    assert calibration.pixel_threshold > table_threshold(calibration.pixel_tail, 0.01)  # stricter than 1 % of good
    outlined = maps[10:] > calibration.pixel_threshold
    assert outlined[masks[10:]].mean() > 0.9 and outlined[~masks[10:]].mean() < 0.01
    synthetic = calibrate(ValidationSet(scores, labels, maps, masks, np.ones(15, bool)))
    assert synthetic.pixel_threshold == pytest.approx(table_threshold(synthetic.pixel_tail, 0.01))
    # the real defects' outline also wins over a detector's default rate
    assert calibrate(ValidationSet(scores, labels, maps, masks, np.zeros(15, bool)),
                     default_pixel_rate=0.001).pixel_threshold == calibration.pixel_threshold
