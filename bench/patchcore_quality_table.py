"""A Markdown table from ``bench/patchcore_train.py --quality-seeds K --json FILE`` runs, one per category:
for each metric each method's mean over the seeds with their range, the difference of the first two
methods' means (fast minus exact in the usual run), and the widest range any method shows over its own
seeds. ``bench/patchcore_train.py`` prints the same table after a run with several seeds.

    python bench/patchcore_quality_table.py q_tire.json q_transistor.json ...
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

METRICS = (("image_AUROC", "image AUROC"), ("image_F1", "image F1"), ("pixel_AUROC", "pixel AUROC"),
           ("pixel_F1", "pixel F1"))


def values(rows: list[dict], method: str, key: str) -> list[float]:
    return [100 * row["metrics"][key] for row in rows if row["method"] == method]


def cell(numbers: list[float]) -> str:
    return f"{statistics.mean(numbers):.2f} [{min(numbers):.2f}, {max(numbers):.2f}]"


def table(runs: list[dict]) -> str:
    methods = list(dict.fromkeys(row["method"] for run in runs for row in run["rows"]))
    lines = ["| category | metric | " + " | ".join(f"{method}: mean [min, max]" for method in methods)
             + " | difference of means | widest own range |", "|---|---|" + "---|" * (len(methods) + 2)]
    for run in runs:
        rows = run["rows"]
        for key, label in METRICS:
            numbers = [values(rows, method, key) for method in methods]
            spread = max(max(v) - min(v) for v in numbers)
            difference = f"{statistics.mean(numbers[0]) - statistics.mean(numbers[1]):+.2f}" if len(methods) > 1 else ""
            lines.append(f"| {run['dataset']} | {label} | " + " | ".join(cell(v) for v in numbers)
                         + f" | {difference} | {spread:.2f} |")
        radii = [statistics.mean(row["radius"] for row in rows if row["method"] == method) for method in methods]
        difference = f"{100 * (radii[0] / radii[1] - 1):+.1f} %" if len(methods) > 1 else ""
        lines.append(f"| {run['dataset']} | covering radius | " + " | ".join(f"{r:.3f}" for r in radii)
                     + f" | {difference} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    print(table([json.loads(path.read_text()) for path in args.files]))


if __name__ == "__main__":
    main()
