"""A Markdown table from ``bench/patchcore_train.py --quality-seeds K --json FILE`` runs, one per category:
for each metric the fast and exact coreset's mean over the seeds with their range, the difference of the
means, and the widest range either method shows over its own seeds.

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
    lines = ["| category | metric | fast: mean [min, max] | exact: mean [min, max] | difference of means "
             "| widest own range |", "|---|---|---|---|---|---|"]
    for run in runs:
        rows = run["rows"]
        for key, label in METRICS:
            fast, exact = values(rows, "fast", key), values(rows, "exact", key)
            spread = max(max(v) - min(v) for v in (fast, exact))
            lines.append(f"| {run['dataset']} | {label} | {cell(fast)} | {cell(exact)} | "
                         f"{statistics.mean(fast) - statistics.mean(exact):+.2f} | {spread:.2f} |")
        fast_r = [row["radius"] for row in rows if row["method"] == "fast"]
        exact_r = [row["radius"] for row in rows if row["method"] == "exact"]
        lines.append(f"| {run['dataset']} | covering radius | {statistics.mean(fast_r):.3f} | "
                     f"{statistics.mean(exact_r):.3f} | {100 * (statistics.mean(fast_r) / statistics.mean(exact_r) - 1):+.1f} % | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    print(table([json.loads(path.read_text()) for path in args.files]))


if __name__ == "__main__":
    main()
