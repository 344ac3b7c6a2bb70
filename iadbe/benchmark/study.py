"""The IADBE study's published result tables, stored as data, and the comparison with our runs.

``study_tables.json`` (next to this file) holds every per-category table of the study's slides
(``shared/reference/iadbe_study_slides.txt``): MVTec AD / VisA / MVTec 3D-AD image AUROC, pixel AUROC
and PRO, Kolektor, the multi-class unified table and the Cardboard image F1 row (anomalib models beside
YOLO detectors; its F1 thresholds were chosen on the test set), plus the per-dataset time/AUROC summary. It was
made by :func:`parse_study_text`; ``tests/test_benchmark_study.py`` re-parses the text and checks the
file still matches.

Values are as printed (percent); ``None`` where the study printed "-". The study's own "Average"
column is kept as printed and recomputed by :func:`check_study_averages`, which says where it is wrong.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

STUDY_TABLES_PATH = Path(__file__).with_name("study_tables.json")
#: Printed averages have two decimals; a recomputed mean further away than this is a wrong average.
AVERAGE_TOLERANCE = 0.01
#: Our number and the study's differ "notably" above this many AUROC points.
FLAG_POINTS = 2.0

#: Section titles of the slides -> (dataset kind, metric) of our benchmark.
SECTIONS = {
    "MVTec Image Level AUROC": ("mvtec", "image_AUROC"),
    "MVTec with Multi-class Unified": ("mvtec", "unified_image_AUROC"),
    "MVTec Pixel Level AUROC": ("mvtec", "pixel_AUROC"),
    "MVTec Pixel Level PRO": ("mvtec", "pixel_AUPRO"),
    "VisA Image Level AUROC": ("visa", "image_AUROC"),
    "VisA Pixel Level AUROC": ("visa", "pixel_AUROC"),
    "VisA Pixel Level PRO": ("visa", "pixel_AUPRO"),
    "MVTec3D Image Level AUROC": ("mvtec3d", "image_AUROC"),
    "MVTec3D Pixel Level AUROC": ("mvtec3d", "pixel_AUROC"),
    "MVTec3D Pixel Level PRO": ("mvtec3d", "pixel_AUPRO"),
    "Kolektor Image Level AUROC": ("kolektor", "image_AUROC"),
    "Kolektor Pixel Level AUROC": ("kolektor", "pixel_AUROC"),
    "Kolektor Pixel Level PRO": ("kolektor", "pixel_AUPRO"),
    "Custom dataset cardboard (Anomalib vs YOLO)": ("cardboard", "image_F1"),
}
_NOT_CATEGORIES = {"Average", "Source", "Chosen"}
_SUMMARY_HEADER = "Model\tBTech Time"


def category_key(name: str) -> str:
    """``"Metal Nut"`` -> ``"metal_nut"``: the study's category names as our dataset folders spell them."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def model_key(name: str) -> str:
    """The study's model names (``STPFM``, ``RD``, ``UFLOW``...) as registry names."""
    from iadbe.models.registry import normalize_name

    return normalize_name(name)


def _value(cell: str) -> float | str | None:
    text = re.sub(r"</?b>", "", cell).strip()
    if text in ("", "-"):
        return None
    try:
        return float(text.rstrip("s"))
    except ValueError:
        return text


def _table_lines(lines: list[str], start: int) -> list[list[str]]:
    """Tab-separated rows after the heading at ``start``: the header row, then the model rows."""
    rows: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("#") or line.startswith("**Table"):
            break
        if "\t" in line:
            rows.append(line.rstrip("\n").split("\t"))
    return rows


def _parse_category_table(rows: list[list[str]]) -> dict[str, Any]:
    header = [cell.strip() for cell in rows[0]]
    if header[0] == "" or header[0] == "Model":
        header = header[1:]
    body = rows[1:]
    transposed = len(body) == 1 and body[0][0].strip() in ("Kolektor", "Cardboard")  # one category, models as columns
    if transposed:
        category = body[0][0].strip()
        values = [_value(c) for c in body[0][1:]]
        return {"categories": [category_key(category)], "rows": {
            model_key(m): {"values": {category_key(category): v}, "printed_average": None, "extra": None,
                           "problem": None} for m, v in zip(header, values)}}
    categories = [h for h in header if h not in _NOT_CATEGORIES and h]
    extra_column = next((h for h in header if h in ("Source", "Chosen")), None)
    table: dict[str, Any] = {"categories": [category_key(c) for c in categories], "rows": {}}
    for row in body:
        name, cells = row[0].strip(), [_value(c) for c in row[1:]]
        while cells and cells[-1] is None and len(cells) > len(header):
            cells.pop()
        problem = None
        if any(isinstance(c, str) for c in cells[: len(categories) + 1]):
            leading = next(i for i, c in enumerate(cells) if isinstance(c, str))
            problem = (f"row is misaligned: {leading} numbers where {len(categories)} categories + the average "
                       "belong; a value is missing, so which category each number is for is unknown")
        values = dict(zip([category_key(c) for c in categories], cells[: len(categories)]))
        printed = cells[len(categories)] if len(cells) > len(categories) else None
        extra = cells[len(categories) + 1] if extra_column and len(cells) > len(categories) + 1 else None
        table["rows"][model_key(name)] = {
            "values": {k: (v if isinstance(v, float) or v is None else None) for k, v in values.items()},
            "printed_average": printed if isinstance(printed, float) else None,
            "extra": extra, "problem": problem,
        }
    if extra_column:
        table["extra_column"] = extra_column
    return table


def _parse_summary(rows: list[list[str]]) -> dict[str, Any]:
    """The time/AUROC per dataset table: {model: {dataset: {"time_s": t, "image_AUROC": a}}}."""
    header = rows[0][1:]
    summary: dict[str, Any] = {}
    for row in rows[1:]:
        entry: dict[str, dict[str, float | None]] = {}
        for column, cell in zip(header, row[1:]):
            dataset, _, kind = column.strip().rpartition(" ")
            value = _value(cell)
            key = "time_s" if kind == "Time" else "image_AUROC"
            entry.setdefault(category_key(dataset).replace("_", ""), {})[key] = value if isinstance(value, float) else None
        summary[model_key(row[0])] = entry
    return summary


def parse_study_text(text: str) -> dict[str, Any]:
    """Every result table of the study's slides as plain data (see the module docstring)."""
    lines = text.splitlines()
    tables: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for index, line in enumerate(lines):
        title = line[3:].strip() if line.startswith("## ") else None
        if title in SECTIONS:
            dataset, metric = SECTIONS[title]
            tables[f"{dataset}/{metric}"] = {"title": title, "dataset": dataset, "metric": metric,
                                             **_parse_category_table(_table_lines(lines, index))}
        if line.startswith(_SUMMARY_HEADER):
            summary = _parse_summary(_table_lines(lines, index - 1))
    return {"source": "IADBE study slides (anomalib 1.x; checkpoints and thresholds chosen on the test set)",
            "tables": tables, "summary": summary}


@functools.lru_cache(maxsize=1)
def study_tables() -> dict[str, Any]:
    """The stored tables (``study_tables.json``)."""
    return json.loads(STUDY_TABLES_PATH.read_text(encoding="utf-8"))


def study_value(dataset: str, metric: str, model: str, category: str) -> float | None:
    """The study's number (percent) for one cell, or None where it has none."""
    table = study_tables()["tables"].get(f"{dataset}/{metric}")
    if table is None:
        return None
    row = table["rows"].get(model_key(model))
    if row is None or row["problem"]:  # a misaligned row has no trustworthy cell
        return None
    return row["values"].get(category_key(category))


@dataclass(frozen=True)
class AverageCheck:
    """One row of a study table: its printed average and the mean of its own values."""

    table: str
    model: str
    printed: float | None
    recomputed: float | None
    counted: int
    of: int
    problem: str | None

    @property
    def wrong(self) -> bool:
        if self.problem:
            return True
        if self.printed is None or self.recomputed is None:
            return False
        return abs(self.printed - self.recomputed) > AVERAGE_TOLERANCE

    def describe(self) -> str:
        if self.problem:
            return f"{self.table} {self.model}: {self.problem}"
        missing = f" (mean of the {self.counted} of {self.of} categories it has)" if self.counted < self.of else ""
        return (f"{self.table} {self.model}: printed average {self.printed:.2f}, its values give "
                f"{self.recomputed:.2f}{missing}")


def check_study_averages(tables: dict[str, Any] | None = None) -> list[AverageCheck]:
    """Recompute each row's average from its values, for every table with an Average column."""
    tables = (tables or study_tables())["tables"]
    checks: list[AverageCheck] = []
    for key, table in tables.items():
        for model, row in table["rows"].items():
            if row["printed_average"] is None and not row["problem"]:
                continue
            values = [v for v in row["values"].values() if v is not None]
            mean = sum(values) / len(values) if values else None
            checks.append(AverageCheck(key, model, row["printed_average"], None if mean is None else round(mean, 4),
                                       len(values), len(table["categories"]), row["problem"]))
    return checks


@dataclass(frozen=True)
class Comparison:
    """Our number next to the study's for one (model, category, metric); both in percent."""

    model: str
    category: str
    metric: str
    ours: float
    study: float | None

    @property
    def difference(self) -> float | None:
        return None if self.study is None else self.ours - self.study

    @property
    def flagged(self) -> bool:
        return self.difference is not None and abs(self.difference) > FLAG_POINTS


#: The study chose its F1 thresholds on the test set: its F1 is compared with our oracle F1, never with
#: the F1 at our validation-calibrated thresholds.
LIKE_FOR_LIKE = {"image_F1": "image_F1_oracle", "pixel_F1": "pixel_F1_oracle"}


def compare_with_study(rows: Iterable[dict[str, Any]], dataset: str,
                       metrics: tuple[str, ...] = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1",
                                                   "pixel_F1")) -> list[Comparison]:
    """Pair each of our aggregated rows (``model``, ``category``, metrics in [0, 1]) with the study's cell.

    F1 is compared like with like (:data:`LIKE_FOR_LIKE`), and only where the study reports it."""
    found: list[Comparison] = []
    for row in rows:
        for metric in metrics:
            ours = row.get(LIKE_FOR_LIKE.get(metric, metric))
            if ours is None or (isinstance(ours, float) and math.isnan(ours)):
                continue
            study = study_value(dataset, metric, row["model"], row["category"])
            if metric in LIKE_FOR_LIKE and study is None:
                continue
            label = f"{metric} (oracle)" if metric in LIKE_FOR_LIKE else metric
            found.append(Comparison(row["model"], row["category"], label, round(100 * ours, 2), study))
    return found


def format_comparison(comparisons: Iterable[Comparison], dataset: str) -> str:
    """Plain-text table: ours, the study's, the difference, and a flag above :data:`FLAG_POINTS`."""
    lines = [f"{'model':<22} {'category':<14} {'metric':<12} {'ours':>7} {'study':>7} {'diff':>7}"]
    for c in comparisons:
        study = "-" if c.study is None else f"{c.study:.2f}"
        diff = "-" if c.difference is None else f"{c.difference:+.2f}"
        flag = "  <-- differs by more than 2 points" if c.flagged else ""
        lines.append(f"{c.model:<22} {c.category:<14} {c.metric:<12} {c.ours:>7.2f} {study:>7} {diff:>7}{flag}")
    wrong = [check for check in check_study_averages() if check.wrong and check.table.startswith(f"{dataset}/")]
    if wrong:
        lines.append("")
        lines.append(f"The study's printed averages that its own rows do not give ({dataset}):")
        lines += [f"  {check.describe()}" for check in wrong]
    lines.append("")
    lines.append("Study: anomalib 1.x, ResNet/WRN backbones, checkpoints and thresholds chosen on the test set; "
                 "IADBE: validation-only thresholds, the whole test set scored.")
    lines.append("PRO: IADBE integrates the per-region overlap curve up to FPR 0.3 and normalises it to [0, 100]; "
                 "the study's PRO column is on another scale (e.g. 12.31 for PaDiM on tire next to a pixel AUROC "
                 "of 95.22), so compare PRO rankings, not PRO numbers.")
    return "\n".join(lines)
