"""The k-fold protocol's table, laid out as the study's Cardboard comparison (anomaly detectors vs YOLO).

One table per category: a row per model, mean ± std over the folds of image F1 at the thresholds calibrated
on validation data, the oracle image F1 (the best threshold chosen on the test fold, as the study reported
F1), pixel F1 and AUROC where the model gives maps, training time per fold and ms per image. With
``compare_study`` the study's Cardboard row (:mod:`iadbe.benchmark.study`) is set beside it, with a note
that the data differ. The rows come from :func:`iadbe.benchmark.report.aggregate` (mode ``kfold``).
"""

from __future__ import annotations

import statistics
from typing import Any, Sequence

#: (row key, column title, percent?)
COLUMNS = (("image_F1", "image F1 (calibrated)", True), ("image_F1_oracle", "image F1 (oracle)", True),
           ("image_AUROC", "image AUROC", True), ("pixel_F1", "pixel F1 (calibrated)", True),
           ("pixel_AUROC", "pixel AUROC", True), ("training_time_s", "training s / fold", False),
           ("openvino_ms", "OpenVINO ms / image", False), ("torch_ms", "torch ms / image", False))
#: The study's Cardboard image-F1 row: these of its models are shown beside ours.
STUDY_MODELS = ("padim", "patchcore", "yolov3", "yolov5", "yolov6", "yolov7", "yolov8", "yolov9", "yolov10")
DATA_DIFFER = ("The study's numbers are for its own Cardboard set (not published), ours for the category named; "
               "the data differ, so compare the ranking of the tracks, not the numbers.")


def _value(row: dict[str, Any], key: str, percent: bool) -> str:
    cell = row.get(key)
    if cell is None:
        return "-"
    if percent:
        return cell.percent()
    text = f"{cell.mean:.1f}"
    return f"{text} ± {cell.std:.1f}" if cell.n > 1 else text


def _track(model: str) -> str:
    from iadbe.models import get_spec

    return "supervised" if get_spec(model).supervised else "anomaly"


def caps_line(records: Sequence[dict[str, Any]], category: str) -> str:
    """What the runs were capped at (stated in the table, honestly)."""
    chosen = [r for r in records if r.get("status") == "ok" and r.get("mode") == "kfold" and r["category"] == category]
    if not chosen:
        return ""
    spec = chosen[0]["spec"]
    capped = sorted({r["model"] for r in chosen if (r.get("fit") or {}).get("stopped_by_time_cap")})
    epochs = {r["model"]: r.get("epochs_trained") for r in chosen}
    parts = [f"{spec.get('folds')} folds, seed {spec.get('seed')}, image size {spec.get('image_size')}",
             f"normal training images capped at {spec.get('max_train_images') or 'all'}",
             f"training time cap {spec.get('max_train_minutes') or 'none'} min per fold"]
    if capped:
        parts.append("stopped by the cap: " + ", ".join(capped))
    machine = chosen[0].get("machine") or {}
    parts.append(f"torch threads per run: {machine.get('torch_threads', '?')}, on a machine of {machine.get('cpus', '?')} CPUs")
    trained = ", ".join(f"{m} {e}" for m, e in sorted(epochs.items()) if e is not None)
    return "; ".join(parts) + (f"; epochs trained (last fold): {trained}" if trained else "")


def kfold_table(rows: Sequence[dict[str, Any]], category: str) -> str:
    """The Cardboard-style table of one category ('' when it has no k-fold rows)."""
    from iadbe.models import get_spec

    chosen = sorted((r for r in rows if r["mode"] == "kfold" and r["category"] == category),
                    key=lambda r: (_track(r["model"]), r["model"]))
    if not chosen:
        return ""
    lines = ["| model | track | folds | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for row in chosen:
        cells = [_value(row, key, percent) for key, _, percent in COLUMNS]
        lines.append(f"| {get_spec(row['model']).display_name} | {_track(row['model'])} | {row.get('folds') or '-'} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_cardboard_row() -> str:
    """The study's Cardboard image F1 (percent) of :data:`STUDY_MODELS`, as one Markdown table."""
    from iadbe.benchmark.study import study_value

    values = [(model, study_value("cardboard", "image_F1", model, "cardboard")) for model in STUDY_MODELS]
    values = [(model, value) for model, value in values if value is not None]
    if not values:
        return ""
    return "\n".join(["| study (Cardboard) | " + " | ".join(m for m, _ in values) + " |",
                      "|---|" + "---|" * len(values),
                      "| image F1 (oracle) | " + " | ".join(f"{v:.2f}" for _, v in values) + " |"])


def kfold_markdown(rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]],
                   compare_study: bool = True) -> str:
    """Every category's table with its caps, and the study's Cardboard row with the note that data differ."""
    categories = sorted({r["category"] for r in rows if r["mode"] == "kfold"})
    parts = ["## Supervised vs anomaly detectors, k-fold (the study's Cardboard comparison)", "",
             "Every labelled image (test images and labelled defects outside the test set) is tested once, by "
             "models that never saw it; anomaly detectors train on normal images only, supervised ones also on "
             "the labelled images of the other folds; thresholds come from a validation part of the training "
             "folds in both tracks. Percent, mean ± std over the folds."]
    for category in categories:
        parts += ["", f"### {category}", "", kfold_table(rows, category), "", f"Caps: {caps_line(records, category)}."]
    study = study_cardboard_row() if compare_study else ""
    if study:
        parts += ["", "### The study's Cardboard row", "", study, "", DATA_DIFFER]
    return "\n".join(parts)


def summary_rows(rows: Sequence[dict[str, Any]], metric: str = "image_F1") -> dict[str, dict[str, float]]:
    """Per model, per category: the mean of ``metric`` (percent) over the folds (for the README summary)."""
    found: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["mode"] == "kfold" and row.get(metric) is not None:
            found.setdefault(row["model"], {})[row["category"]] = round(100 * row[metric].mean, 2)
    return found


def mean_over_categories(values: dict[str, float]) -> float | None:
    return round(statistics.fmean(values.values()), 2) if values else None

