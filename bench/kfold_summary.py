"""docs/benchmark/kfold/README.md from the records of bench/kfold_all.sh: every category's k-fold table (mean ±
std over the folds, caps stated) and one summary of image F1 at the calibrated threshold per model and category,
with the study's Cardboard row beside them. ``python bench/kfold_summary.py [FOLDER]``."""

from __future__ import annotations

import sys
from pathlib import Path

from iadbe.benchmark.kfold_report import DATA_DIFFER, summary_rows, study_cardboard_row
from iadbe.benchmark.report import aggregate, comparison_markdown
from iadbe.benchmark.runs import load_records
from iadbe.models import get_spec

#: KolektorSDD's YOLO export is read from its ``Datasets`` folder: that is its category name in the records.
NAMES = {"Datasets": "kolektor"}


def summary_table(folder: Path, metric: str) -> str:
    records = [r for runs in sorted(folder.glob("*/runs")) for r in load_records(runs.parent) if r.get("mode") == "kfold"]
    values = summary_rows(aggregate(records), metric)
    categories = sorted({c for per in values.values() for c in per})
    lines = ["| model | " + " | ".join(NAMES.get(c, c) for c in categories) + " |", "|---|" + "---|" * len(categories)]
    for model, per in sorted(values.items(), key=lambda item: (get_spec(item[0]).supervised, item[0])):
        lines.append(f"| {get_spec(model).display_name} | " + " | ".join(
            f"{per[c]:.2f}" if c in per else "-" for c in categories) + " |")
    return "\n".join(lines)


def main(folder: Path) -> None:
    parts = ["# Supervised vs anomaly detectors: k-fold on every real category with defect masks", "",
             "Written by `python bench/kfold_summary.py` from the records of `bench/kfold_all.sh` (one "
             "`iadbe benchmark --protocol kfold --folds 3` per category, in the category's folder).", "",
             "## Image F1 at the calibrated threshold (mean over the 3 folds, percent)", "",
             summary_table(folder, "image_F1"), "",
             "## Image F1, oracle threshold (the study's way; mean over the 3 folds, percent)", "",
             summary_table(folder, "image_F1_oracle"), "",
             "## The study's Cardboard row (image F1, oracle)", "", study_cardboard_row(), "", DATA_DIFFER, "",
             comparison_markdown([folder]).replace("### Datasets", "### kolektor (KolektorSDD, its YOLO export's Datasets folder)").replace("\n### The study's Cardboard row", "\n### The study's Cardboard "
                                                   "row (again)")]
    (folder / "README.md").write_text("\n".join(parts) + "\n", encoding="utf-8")
    print((folder / "README.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "benchmark" / "kfold")
