"""Pictures of a model's decisions: where good parts and defects score against the threshold.

Drawn with matplotlib's object API on an Agg canvas of their own (no pyplot state, no backend switch for
the process), returned as RGB arrays so the app, the CLI and tests can use them alike.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

_COLOURS = {"normal": "#2c7fb8", "real_defects": "#d95f0e", "synthetic": "#9e9ac8"}
_LABELS = {"normal": "good parts (validation)", "real_defects": "real defects (validation)",
           "synthetic": "synthetic anomalies (validation)"}


def validation_histogram(meta: dict[str, Any], width_px: int = 720, height_px: int = 360) -> np.ndarray:
    """Histogram of the validation scores of good parts and anomalies with the image threshold line.

    ``meta`` is a model's iadbe.json (``calibration.validation_scores`` and ``postprocess``); raises
    ``ValueError`` for a model calibrated before validation scores were recorded.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scores = (meta.get("calibration") or {}).get("validation_scores")
    if not scores or not scores.get("normal"):
        raise ValueError("this model records no validation scores (calibrated by an older IADBE)")
    threshold = float(meta["postprocess"]["image_threshold"])
    groups = {kind: np.asarray(values, dtype=np.float64) for kind, values in scores.items() if values}
    every = np.concatenate([*groups.values(), [threshold]])
    bins = np.linspace(float(every.min()), float(every.max()), 40)
    figure = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for kind, values in groups.items():
        axes.hist(values, bins=bins, alpha=0.6, color=_COLOURS.get(kind), label=f"{_LABELS.get(kind, kind)}: "
                                                                                f"{len(values)}")
    rate = (meta.get("calibration") or {}).get("false_alarm_rate")
    axes.axvline(threshold, color="#c51b8a", linewidth=2,
                 label="threshold" + (f" ({100 * rate:.2g} % false alarms on good parts)" if rate else ""))
    axes.set_xlabel("raw anomaly score")
    axes.set_ylabel("images")
    axes.set_title("Validation scores and the decision threshold")
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def score_timeline(times: Sequence[float], scores: Sequence[float], threshold: float, width_px: int = 900,
                   height_px: int = 300) -> np.ndarray:
    """The score of each video frame against time, the threshold line, anomalous frames marked in red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, y = np.asarray(times, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    figure = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(x, y, color=_COLOURS["normal"], linewidth=1.2, label="frame score")
    above = y > threshold
    if above.any():
        axes.scatter(x[above], y[above], s=8, color="#d7301f", zorder=3, label=f"anomalous: {int(above.sum())} frames")
    axes.axhline(threshold, color="#c51b8a", linewidth=1.5, linestyle="--", label=f"threshold {threshold:g}")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("score (0.5 = calibrated)")
    axes.set_title(f"Score per frame ({len(y)} frames)")
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def confusion_rows(counts: dict[str, Any]) -> list[list[Any]]:
    """The test confusion counts as table rows: (truth, shown as normal, shown as anomalous)."""
    return [["good part", counts.get("true_negatives"), counts.get("false_positives")],
            ["defect", counts.get("false_negatives"), counts.get("true_positives")]]


CONFUSION_HEADERS: Sequence[str] = ("test images", "labelled normal", "labelled anomalous")
