"""The calibration rule on score distributions whose answer is known (iadbe/calibration.py)."""

from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import norm

from iadbe.calibration import (
    DEFAULT_FALSE_ALARM_RATE,
    MAX_FALSE_ALARM_RATE,
    RULE,
    Calibration,
    ValidationSet,
    calibrate,
    check_false_alarm_rate,
    expected_f1_threshold,
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


def _population_f1(threshold: float, share: float, shift: float = 2.0) -> float:
    """Expected F1 of normals N(0, 1) and defects N(shift, 1) at a defect share, from the distributions."""
    detected, false_alarms = norm.sf(threshold - shift), norm.sf(threshold)
    return 2 * share * detected / (share * detected + share + (1 - share) * false_alarms)


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_real_defects_set_the_threshold_of_best_expected_f1_at_their_sources_defect_share(share):
    grid = np.linspace(-2, 6, 8001)
    best = grid[int(np.argmax([_population_f1(t, share) for t in grid]))]  # 1.69 at 10 %, 0.84 at 50 %
    thresholds, shares_of_best, stated_rates, true_rates = [], [], [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        validation = ValidationSet(np.r_[rng.normal(size=400), rng.normal(2.0, 1.0, size=200)],
                                   np.r_[np.zeros(400, int), np.ones(200, int)], defect_share=share)
        calibration = calibrate(validation)
        thresholds.append(calibration.image_threshold)
        shares_of_best.append(_population_f1(calibration.image_threshold, share) / _population_f1(best, share))
        assert calibration.defect_share == share
        stated_rates.append(calibration.false_alarm_rate)
        true_rates.append(norm.sf(calibration.image_threshold))
    assert abs(np.mean(thresholds) - best) < 0.15, (np.mean(thresholds), best)
    assert np.mean(shares_of_best) > 0.97 and min(shares_of_best) > 0.9
    # the false-alarm rate it reports is right on average (each one carries its 400 normals' sampling error)
    assert np.mean(stated_rates) == pytest.approx(np.mean(true_rates), rel=0.15)
    assert any("defect share of the data they came from" in note for note in calibration.notes)


def test_rarer_defects_raise_the_threshold_and_the_validations_own_mix_is_the_fallback():
    validation = _validation(real=40, shift=2.0, normals=120, synthetic=0)
    rare, common = (calibrate(replace(validation, defect_share=share)) for share in (0.05, 0.4))
    assert rare.image_threshold > common.image_threshold
    own = calibrate(validation)  # 40 of 160: the validation set's own 25 %
    assert own.defect_share == pytest.approx(0.25)
    assert own.image_threshold == calibrate(replace(validation, defect_share=0.25)).image_threshold
    assert any("validation set's own defect share" in note for note in own.notes)


def test_real_defects_never_pull_the_threshold_below_the_cap():
    subtle = _validation(real=60, shift=0.5, synthetic=0)
    calibration = calibrate(replace(subtle, defect_share=0.9))  # F1 alone would flag nearly everything
    floor = tail_threshold(np.sort(subtle.scores[subtle.normal]), MAX_FALSE_ALARM_RATE)
    assert calibration.image_threshold == pytest.approx(floor)
    assert calibration.false_alarm_rate == pytest.approx(MAX_FALSE_ALARM_RATE)


def test_clear_real_defects_lift_the_threshold_into_the_gap():
    clear = _validation(real=20, shift=8.0, synthetic=0)
    calibration = calibrate(replace(clear, defect_share=0.1))
    normals, defects = clear.scores[clear.normal], clear.scores[clear.real_defects]
    assert normals.max() < calibration.image_threshold < defects.min()  # no validation part misjudged
    assert calibration.false_alarm_rate < DEFAULT_FALSE_ALARM_RATE


def test_a_stated_rate_wins_over_real_defects_and_the_calibrated_rate_round_trips():
    validation = replace(_validation(real=40, shift=2.0, synthetic=0), defect_share=0.2)
    stated = calibrate(validation, false_alarm_rate=0.01)
    normals = np.sort(validation.scores[validation.normal])
    assert stated.image_threshold == pytest.approx(tail_threshold(normals, 0.01))
    assert stated.defect_share is None and stated.false_alarm_rate == 0.01
    chosen = calibrate(validation)
    moved = chosen.with_false_alarm_rate(chosen.false_alarm_rate)
    assert moved.image_threshold == pytest.approx(chosen.image_threshold)
    assert Calibration.from_dict(chosen.to_dict()) == chosen


def test_expected_f1_threshold_weighs_by_the_share_not_by_the_counts():
    normals, defects = np.array([0.0, 1.0, 2.0, 3.0]), np.array([2.5, 4.0])
    # at a 50 % share flagging above 2.25 catches both defects for one false alarm in four
    assert expected_f1_threshold(normals, defects, 0.5) == pytest.approx(2.25)
    # at 1 % a false alarm costs far more than a miss: only the defect above every normal is flagged
    assert expected_f1_threshold(normals, defects, 0.01) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="defect share"):
        expected_f1_threshold(normals, defects, 1.0)


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
