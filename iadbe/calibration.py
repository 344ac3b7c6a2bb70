"""Decision thresholds that carry over to real defects, fitted on validation data only.

What a user really has is good parts. The rule therefore starts from the validation normals:

1. **Image threshold**: the score that a stated share of good parts exceeds (the *false-alarm rate*,
   :data:`DEFAULT_FALSE_ALARM_RATE` unless the user says otherwise), read off the validation normals'
   scores by :func:`tail_threshold`.
2. **Real labelled defects** in validation (found in the dataset, never test images), when the user states
   no rate: the threshold that maximises the expected F1 at the *defect share of the data they came from*
   (:func:`expected_f1_threshold`; a YOLO export's train split, a ``val/`` folder, the k-fold protocol's
   labelled images), never below the false-alarm threshold of :data:`MAX_FALSE_ALARM_RATE`. F1 depends on
   how many parts are defective: the F1 optimum of the validation set itself would follow how many defects
   it happens to hold (KolektorSDD's: 60 %, its test set and its train split 13 %; that optimum flagged 45 %
   of the good test parts). A rate the user states is kept as stated.
3. **Synthetic anomalies** are only a secondary signal: they set the colour range of the heatmaps, and the
   validation report shows how many of them the threshold catches. They never set a threshold: the old
   rule (F1 optimum on synthetic Perlin anomalies) put the threshold above most real defects.
4. **Pixel threshold**: the same false-alarm rule on the validation normals' pixels, at the detector's
   pixel rate (:data:`DEFAULT_PIXEL_FALSE_ALARM_RATE` unless its registry entry says otherwise: PatchCore's
   maps put the best outline of real defects at about a tenth of PaDiM's share of good pixels); with real
   validation defects that have masks, the threshold that
   best outlines them instead (how much of a defective image is defect does not depend on the validation
   set's mix: KolektorSDD's thin cracks need a far stricter threshold than 1 % of good pixels).
   :mod:`iadbe.decisions` then makes masks agree with the label.

Everything needed to move the thresholds to another false-alarm rate later (the normals' scores, a table
of the normals' pixel quantiles) is kept in the calibration, so ``iadbe predict --false-alarm-rate`` and
the app need no validation data. Scores are normalised so that the threshold is always 0.5:
``clip((x - threshold) / (max - min) + 0.5, 0, 1)`` as anomalib's post-processor does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from iadbe.errors import SettingsError

RULE = "normal-tail/v2"
#: The rule files written before this module: F1 optimum on the validation anomalies (often synthetic).
LEGACY_RULE = "f1-on-validation-anomalies"
DEFAULT_FALSE_ALARM_RATE = 0.05
DEFAULT_PIXEL_FALSE_ALARM_RATE = 0.01
#: Real defects may pull the image threshold down at most to this false-alarm rate on good parts.
MAX_FALSE_ALARM_RATE = 0.2
#: Real defects' masks may pull the pixel threshold down at most to this share of good pixels.
MAX_PIXEL_FALSE_ALARM_RATE = 0.05
#: Upper tail probabilities of the normals' pixel values kept for re-thresholding (log-spaced).
PIXEL_TAIL_RATES = tuple(float(f"{r:.3g}") for r in np.logspace(math.log10(0.5), -6, 23))
_PIXEL_SAMPLE_LIMIT = 4_000_000


def check_false_alarm_rate(rate: float | None, what: str = "false-alarm rate") -> float | None:
    """``rate`` as a float in (0, 0.5], or None; a clear error otherwise."""
    if rate is None:
        return None
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise SettingsError(f"{what} must be a number between 0 and 0.5 (e.g. 0.01 for 1 %), got {rate!r}") from None
    if not 0.0 < value <= 0.5:
        raise SettingsError(f"{what} must be between 0 and 0.5 (e.g. 0.01 for 1 %), got {rate!r}")
    return value


def tail_threshold(normal_values: Sequence[float] | np.ndarray, rate: float) -> float:
    """The value that a share ``rate`` of normal values exceeds, estimated from a small sample.

    The sample's median and its upper spread (the distance from the median to the 84th percentile, one
    standard deviation for Gaussian data; larger for the right-skewed scores of anomaly detectors) give
    ``median + z(1 - rate) * upper_spread``. This extrapolates below 1 / n, where an empirical quantile
    would just return the sample's maximum, and one odd good part cannot drag it far as it would a mean
    and standard deviation.
    """
    median, spread = _median_and_spread(np.asarray(normal_values, dtype=np.float64))
    return median + _normal_quantile(1.0 - rate) * spread


_PHI_1 = 0.8413447460685429  # P(Z <= 1) of the standard normal


def tail_rate(normal_values: Sequence[float] | np.ndarray, threshold: float) -> float:
    """The share of good parts above ``threshold`` by the model of :func:`tail_threshold` (its inverse)."""
    from scipy.stats import norm

    median, spread = _median_and_spread(np.asarray(normal_values, dtype=np.float64))
    return float(norm.sf((float(threshold) - median) / spread))


def _median_and_spread(normal_values: np.ndarray) -> tuple[float, float]:
    values = np.sort(normal_values.ravel())
    values = values[np.isfinite(values)]
    if values.size < 2:
        raise ValueError("a false-alarm threshold needs at least two normal validation values")
    median = float(np.quantile(values, 0.5))
    spread = float(np.quantile(values, _PHI_1)) - median
    if spread <= 0:  # more than a third of the values tie with the median: fall back to the full spread
        spread = float(values[-1] - values[0]) / 2 or 1e-12
    return median, spread


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def pixel_tail_table(normal_maps: np.ndarray) -> tuple[tuple[float, float], ...]:
    """(upper tail rate, value) pairs of the normals' pixel values at :data:`PIXEL_TAIL_RATES`.

    There are 10^5-10^6 normal pixels per image, so the empirical quantiles are used directly (neighbouring
    pixels are correlated; the table stops at 1e-6, below which a few images cannot say anything).
    """
    pixels = np.asarray(normal_maps, dtype=np.float32).ravel()
    if pixels.size > _PIXEL_SAMPLE_LIMIT:
        pixels = pixels[:: int(math.ceil(pixels.size / _PIXEL_SAMPLE_LIMIT))]
    values = np.quantile(pixels, [1.0 - rate for rate in PIXEL_TAIL_RATES])
    return tuple((rate, float(value)) for rate, value in zip(PIXEL_TAIL_RATES, values))


def table_threshold(table: Sequence[Sequence[float]], rate: float) -> float:
    """The value of a tail table at ``rate``, interpolated in log(rate); clamped to the table's ends."""
    rates = np.log10([row[0] for row in table])[::-1]
    values = np.asarray([row[1] for row in table], dtype=np.float64)[::-1]
    return float(np.interp(math.log10(rate), rates, values))


@dataclass(frozen=True)
class Calibration:
    """Thresholds and ranges in raw model units, fitted on validation data only.

    ``normal_scores`` (the validation normals' raw image scores, sorted) and ``pixel_tail`` let the
    thresholds move to another false-alarm rate (:meth:`with_false_alarm_rate`) and tell where a score sits
    among good parts (:meth:`normal_percentile`). Files written before the rule existed load with
    ``rule = LEGACY_RULE`` and neither.
    """

    image_threshold: float
    pixel_threshold: float
    image_min: float
    image_max: float
    pixel_min: float
    pixel_max: float
    rule: str = LEGACY_RULE
    false_alarm_rate: float | None = None
    pixel_false_alarm_rate: float | None = None
    #: the defect share the image threshold's expected F1 was computed at (real validation defects only)
    defect_share: float | None = None
    normal_scores: tuple[float, ...] = field(default=(), repr=False)
    pixel_tail: tuple[tuple[float, float], ...] = field(default=(), repr=False)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["normal_scores"] = [float(v) for v in self.normal_scores]
        data["pixel_tail"] = [[rate, float(value)] for rate, value in self.pixel_tail]
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        values: dict[str, Any] = {key: float(data[key]) for key in
                                  ("image_threshold", "pixel_threshold", "image_min", "image_max",
                                   "pixel_min", "pixel_max")}
        values["rule"] = str(data.get("rule", LEGACY_RULE))
        for key in ("false_alarm_rate", "pixel_false_alarm_rate", "defect_share"):
            values[key] = None if data.get(key) is None else float(data[key])
        values["normal_scores"] = tuple(sorted(float(v) for v in data.get("normal_scores") or ()))
        values["pixel_tail"] = tuple((float(r), float(v)) for r, v in data.get("pixel_tail") or ())
        values["notes"] = tuple(str(n) for n in data.get("notes") or ())
        return cls(**values)

    def normalize_scores(self, scores: np.ndarray) -> np.ndarray:
        return _normalize(scores, self.image_threshold, self.image_min, self.image_max)

    def normalize_maps(self, maps: np.ndarray) -> np.ndarray:
        return _normalize(maps, self.pixel_threshold, self.pixel_min, self.pixel_max)

    @property
    def adjustable(self) -> bool:
        """True when the thresholds can be moved to another false-alarm rate."""
        return len(self.normal_scores) >= 2

    def with_false_alarm_rate(self, rate: float | None = None, pixel_rate: float | None = None) -> "Calibration":
        """The same calibration with the image (and pixel) threshold at another false-alarm rate on good
        parts. ``None`` keeps a threshold as it is."""
        rate = check_false_alarm_rate(rate)
        pixel_rate = check_false_alarm_rate(pixel_rate, "pixel false-alarm rate")
        if rate is None and pixel_rate is None:
            return self
        if not self.adjustable:
            raise SettingsError("this model was calibrated before false-alarm rates were recorded; retrain it "
                                "(or re-test it with `iadbe test`) to choose a false-alarm rate")
        changes: dict[str, Any] = {}
        if rate is not None:
            changes.update(image_threshold=tail_threshold(self.normal_scores, rate), false_alarm_rate=rate,
                           defect_share=None,
                           notes=(f"image threshold moved to a false-alarm rate of {rate:g} by the user",))
        if pixel_rate is not None and self.pixel_tail:
            changes.update(pixel_threshold=table_threshold(self.pixel_tail, pixel_rate),
                           pixel_false_alarm_rate=pixel_rate)
        return replace(self, **changes)

    def normal_percentile(self, raw_score: float) -> float | None:
        """Share of validation normals (in %) scoring at or below ``raw_score``; None without them."""
        if not self.normal_scores:
            return None
        below = np.searchsorted(np.asarray(self.normal_scores), float(raw_score), side="right")
        return 100.0 * float(below) / len(self.normal_scores)


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
    distinct = np.r_[np.diff(sorted_scores) != 0, True]  # only cut between distinct scores
    precision = true_pos / predicted
    recall = true_pos / labels.sum()
    f1 = np.where(distinct, 2 * precision * recall / np.maximum(precision + recall, 1e-12), -1)
    best = int(np.argmax(f1))
    if best + 1 < len(sorted_scores):
        return float((sorted_scores[best] + sorted_scores[best + 1]) / 2)
    return float(sorted_scores[best])


def expected_f1_threshold(normal_scores: np.ndarray, defect_scores: np.ndarray, defect_share: float) -> float:
    """The threshold with the best expected F1 on parts of which a share ``defect_share`` is defective.

    The detection rate is read off the real defects' scores, the false-alarm rate off the normals' scores
    (both empirical: the optimum lies inside the samples' range, where no tail model is needed), and they
    are weighted by ``defect_share`` instead of by how many of each validation happens to hold:
    ``F1 = 2 s d / (2 s d + s (1 - d) + (1 - s) f)`` for share ``s``, detection rate ``d``, false-alarm
    rate ``f``. Candidates are the midpoints between neighbouring scores; among equal F1 the highest wins
    (the fewest false alarms)."""
    normal = np.sort(np.asarray(normal_scores, dtype=np.float64).ravel())
    defects = np.sort(np.asarray(defect_scores, dtype=np.float64).ravel())
    if normal.size < 2 or defects.size < 1:
        raise ValueError("an expected-F1 threshold needs at least two normal and one defective score")
    if not 0.0 < defect_share < 1.0:
        raise ValueError(f"the defect share must be between 0 and 1 (exclusive), got {defect_share}")
    every = np.unique(np.r_[normal, defects])
    candidates = np.r_[every[0] - 1.0, (every[:-1] + every[1:]) / 2]  # below all: flag everything
    detected = 1.0 - np.searchsorted(defects, candidates, side="right") / defects.size
    false_alarms = 1.0 - np.searchsorted(normal, candidates, side="right") / normal.size
    caught = defect_share * detected
    f1 = 2 * caught / np.maximum(2 * caught + defect_share * (1 - detected) + (1 - defect_share) * false_alarms,
                                 1e-12)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)[-1]
    return float(candidates[best])


@dataclass(frozen=True)
class ValidationSet:
    """Raw outputs on the validation images, with which of them are real defects."""

    scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) 1 = anomalous
    maps: np.ndarray | None = None  # (N, H, W)
    masks: np.ndarray | None = None  # (N, H, W) bool
    synthetic: np.ndarray | None = None  # (N,) bool: a synthetic anomaly
    #: share of defective parts in the data the real defects came from (None: unknown, the validation's own)
    defect_share: float | None = None

    @property
    def normal(self) -> np.ndarray:
        return np.asarray(self.labels) == 0

    @property
    def real_defects(self) -> np.ndarray:
        synthetic = np.zeros(len(self.labels), bool) if self.synthetic is None else np.asarray(self.synthetic, bool)
        return (np.asarray(self.labels) == 1) & ~synthetic


def calibrate(
    validation: ValidationSet,
    false_alarm_rate: float | None = None,
    pixel_false_alarm_rate: float | None = None,
    *,
    default_pixel_rate: float | None = None,
) -> Calibration:
    """Fit the thresholds (module docstring) and the normalisation ranges on validation outputs.

    ``false_alarm_rate`` / ``pixel_false_alarm_rate``: the user's rates (None: the defaults);
    ``default_pixel_rate``: the detector's default pixel rate (None: :data:`DEFAULT_PIXEL_FALSE_ALARM_RATE`).
    Real validation defects set the image threshold unless the user stated a rate, and their masks outline
    the pixel threshold unless the user stated a pixel rate."""
    stated = check_false_alarm_rate(false_alarm_rate)
    pixel_rate = check_false_alarm_rate(pixel_false_alarm_rate, "pixel false-alarm rate") \
        or check_false_alarm_rate(default_pixel_rate, "default pixel false-alarm rate") \
        or DEFAULT_PIXEL_FALSE_ALARM_RATE
    scores = np.asarray(validation.scores, dtype=np.float64)
    normal = validation.normal
    if normal.sum() < 2:
        raise ValueError("calibration needs at least two normal validation images")
    normal_scores = np.sort(scores[normal])
    image_threshold, rate, share, notes = _image_threshold(normal_scores, scores[validation.real_defects], stated,
                                                           validation.defect_share)
    image_min, image_max = float(scores.min()), float(scores.max())
    pixel_tail: tuple[tuple[float, float], ...] = ()
    if validation.maps is not None:
        maps = np.asarray(validation.maps)
        pixel_tail = pixel_tail_table(maps[normal])
        pixel_threshold = table_threshold(pixel_tail, pixel_rate)
        outlined = None if pixel_false_alarm_rate else _real_defect_pixel_threshold(validation, pixel_tail)
        if outlined is not None:  # the user's own pixel rate wins over the outline
            pixel_threshold = outlined
            pixel_rate = float((maps[normal] > outlined).mean())  # what the outline flags of good pixels
            notes.append("pixel threshold: the best outline of the real validation defects' masks (F1 over their "
                         f"pixels); it flags {pixel_rate:.2g} of good validation pixels")
        pixel_min, pixel_max = float(maps.min()), float(maps.max())
    else:
        pixel_threshold, pixel_min, pixel_max = image_threshold, image_min, image_max
    return Calibration(
        image_threshold=image_threshold, pixel_threshold=pixel_threshold, image_min=image_min, image_max=image_max,
        pixel_min=pixel_min, pixel_max=pixel_max, rule=RULE, false_alarm_rate=rate,
        pixel_false_alarm_rate=pixel_rate if validation.maps is not None else None, defect_share=share,
        normal_scores=tuple(float(v) for v in normal_scores), pixel_tail=pixel_tail, notes=tuple(notes),
    )


def _real_defect_pixel_threshold(validation: ValidationSet, pixel_tail: Sequence[Sequence[float]]) -> float | None:
    """With real validation defects that have masks: the F1-optimal pixel threshold *within those images*
    (defect against background: independent of how many good images validation holds), not below the
    normals' :data:`MAX_PIXEL_FALSE_ALARM_RATE` tail. None without such defects."""
    if validation.masks is None or validation.maps is None:
        return None
    chosen = validation.real_defects & np.asarray([m.any() for m in validation.masks], bool)
    if not chosen.any():
        return None
    maps = np.asarray(validation.maps)[chosen].ravel()
    masks = np.asarray(validation.masks)[chosen].ravel().astype(bool)
    step = max(1, -(-maps.size // _PIXEL_SAMPLE_LIMIT))
    if masks[::step].all():
        return None
    best = f1_optimal_threshold(maps[::step], masks[::step])
    return max(best, table_threshold(pixel_tail, MAX_PIXEL_FALSE_ALARM_RATE))


def _image_threshold(normal_scores: np.ndarray, defect_scores: np.ndarray, stated: float | None,
                     defect_share: float | None) -> tuple[float, float, float | None, list[str]]:
    """(threshold, the false-alarm rate it gives, the defect share it was chosen at, notes) of the image level
    (module docstring, rules 1 and 2). ``defect_share`` None: the validation set's own is used."""
    if stated is not None or not defect_scores.size:
        rate = stated or DEFAULT_FALSE_ALARM_RATE
        note = f"image threshold: {rate:g} false-alarm rate on {len(normal_scores)} validation normals"
        if defect_scores.size:
            note += " (as stated; the real validation defects only report)"
        return tail_threshold(normal_scores, rate), rate, None, [note]
    share = defect_share or defect_scores.size / (defect_scores.size + normal_scores.size)
    best = expected_f1_threshold(normal_scores, defect_scores, share)
    floor = tail_threshold(normal_scores, MAX_FALSE_ALARM_RATE)
    threshold = max(best, floor)
    rate = tail_rate(normal_scores, threshold)
    where = "the defect share of the data they came from" if defect_share else "the validation set's own defect share"
    notes = [f"image threshold: the best expected F1 over {defect_scores.size} real validation defects and "
             f"{normal_scores.size} validation normals at {where} ({100 * share:.3g} %); it flags "
             f"{100 * rate:.2g} % of good parts"]
    if best < floor:
        notes.append(f"raised to flag at most {MAX_FALSE_ALARM_RATE:g} of good parts")
    return float(threshold), rate, float(share), notes
