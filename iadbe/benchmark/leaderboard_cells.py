"""Leaderboard cells: the study's tables and IADBE's run records as tidy rows, one per (source, benchmark,
dataset, metric, model, category), with what explains a run's number (backbone, image size, epochs, how
thresholds were chosen, both F1s). :mod:`iadbe.benchmark.leaderboard` gathers and filters them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from iadbe.benchmark.leaderboard_view import STUDY
from iadbe.benchmark.report import aggregate
from iadbe.benchmark.study import study_tables

OURS = "IADBE"
#: The study chose checkpoints and thresholds on the test set (its own slides say so).
STUDY_THRESHOLDS = "on the test set (study)"
#: Metrics our runs put on the leaderboard; ``image_F1`` is the oracle F1, the study's way of reporting F1
#: (:data:`iadbe.benchmark.study.LIKE_FOR_LIKE`); the F1 at the calibrated thresholds has its own column.
RUN_METRICS = {"image_AUROC": "image_AUROC", "pixel_AUROC": "pixel_AUROC", "pixel_AUPRO": "pixel_AUPRO",
               "image_F1": "image_F1_oracle"}
#: Our benchmark modes as the study's table names: one_to_all is the study's "unified" table (one model
#: trained on one category, tested on every category); unified is one model trained on all of them.
MODE_PREFIX = {"per_category": "", "one_to_all": "unified_", "unified": "multiclass_"}


def study_cells(tables: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One cell per (dataset, metric, model, category) of the study (None values kept out)."""
    tables = tables or study_tables()
    cells = []
    for table in tables["tables"].values():
        for model, row in table["rows"].items():
            if row["problem"]:  # a misaligned row: which category each number is for is unknown
                continue
            for category, value in row["values"].items():
                if value is not None:
                    cells.append({"source": STUDY, "benchmark": STUDY, "dataset": table["dataset"],
                                  "metric": table["metric"], "model": model, "category": category, "value": value,
                                  "thresholds": STUDY_THRESHOLDS})
    return cells


def thresholds_used(record: Mapping[str, Any]) -> str:
    """How a run's thresholds were chosen, in words.

    Records name the rule (``thresholds``) since the worker wrote it; older ones are told apart by their
    metrics: the oracle F1 and the normal-tail rule came in the same change, so a record with
    ``image_F1_oracle`` was calibrated on the validation normals, one without on the F1 optimum of the
    validation anomalies (often synthetic).
    """
    from iadbe.calibration import LEGACY_RULE, RULE

    chosen = record.get("thresholds") or {}
    rule = chosen.get("rule") or (RULE if "image_F1_oracle" in record.get("metrics", {}) else LEGACY_RULE)
    if rule == LEGACY_RULE:
        return "F1 optimum on validation anomalies (old rule)"
    rate = chosen.get("false_alarm_rate")
    share = "" if rate is None else f", {100 * rate:.2g} % false alarms"
    if chosen.get("defect_share"):
        defects = f"{100 * chosen['defect_share']:.3g} %"
        return f"best expected F1 on real validation defects at a {defects} defect share{share}"
    if rule.startswith(RULE.split("/")[0]):  # normal-tail/v1 and later: the validation normals alone
        return f"validation normals{share}"
    return f"{rule}{share}"


def _image_size(record: Mapping[str, Any]) -> str:
    size = (record.get("config") or {}).get("image_size") or (record.get("spec") or {}).get("image_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return f"{size[0]}x{size[1]}" if size[0] != size[1] else str(size[0])
    return "-" if size is None else str(size)


def _percent(cell: Any) -> float | None:
    return None if cell is None else 100 * cell.mean


def run_cells(records: Sequence[Mapping[str, Any]], benchmark: str) -> list[dict[str, Any]]:
    """The cells of one benchmark's records (seeds pooled by :func:`iadbe.benchmark.report.aggregate`)."""
    by_dataset: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        if record.get("status") == "ok":
            by_dataset.setdefault(str(record.get("dataset") or "?"), []).append(record)
    cells = []
    for dataset, items in sorted(by_dataset.items()):
        first = {(r.get("mode", "per_category"), r["model"], r["category"]): r for r in reversed(items)}
        for row in aggregate(items):
            record = first[(row["mode"], row["model"], row["trained_on"])]
            info = {"source": OURS, "benchmark": benchmark, "dataset": dataset, "model": row["model"],
                    "category": row["category"], "backbone": row["backbone"] or "none",
                    "image size": _image_size(record), "epochs": None if row["epochs_trained"] is None
                    else row["epochs_trained"].mean, "thresholds": thresholds_used(record),
                    "training s": None if row["training_time_s"] is None else row["training_time_s"].mean,
                    "F1 calibrated": _percent(row["image_F1"]), "F1 oracle": _percent(row["image_F1_oracle"]),
                    "seeds": len(row["seeds"])}
            for metric, key in RUN_METRICS.items():
                value = _percent(row[key])
                if value is not None and not math.isnan(value):
                    cells.append({**info, "metric": MODE_PREFIX.get(row["mode"], row["mode"] + "_") + metric,
                                  "value": value})
    return cells
