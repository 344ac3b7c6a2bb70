"""One filtered leaderboard table (:class:`View`): what to mark in it, its exports (CSV, Markdown, LaTeX
as ``iadbe benchmark`` writes them) and its cells as a styled ``gr.Dataframe`` value.

:mod:`iadbe.benchmark.leaderboard` builds the views; this module needs nothing from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from iadbe.benchmark.report import METRIC_TITLES, latex_escape

#: The benchmark name of the study's rows.
STUDY = "study"
TITLES = {**METRIC_TITLES, "image_F1": "Image F1 (oracle threshold for IADBE, as the study chose its own)",
          "unified_image_AUROC": "Image AUROC, one model trained on one category, tested on all (study: unified)",
          "multiclass_image_AUROC": "Image AUROC, one model trained on all categories",
          "unified_pixel_AUROC": "Pixel AUROC, trained on one category, tested on all",
          "unified_pixel_AUPRO": "PRO, trained on one category, tested on all",
          "multiclass_pixel_AUROC": "Pixel AUROC, one model trained on all categories",
          "multiclass_pixel_AUPRO": "PRO, one model trained on all categories"}
#: Information columns shown with two decimals.
NUMERIC_INFO = ("epochs", "training s", "F1 calibrated", "F1 oracle")


def _label(row: Mapping[str, Any]) -> str:
    return f"{row['model']} (study)" if row["benchmark"] == STUDY else f"{row['model']} ({row['benchmark']})"


@dataclass(frozen=True)
class View:
    """One filtered leaderboard table (values in percent) and what to mark in it: a row per (benchmark,
    model), the study's rows under the benchmark name :data:`STUDY`."""

    dataset: str
    metric: str
    table: pd.DataFrame
    categories: list[str]

    @property
    def value_columns(self) -> list[str]:
        return [*self.categories, "Average"]

    def best(self) -> dict[str, set[int]]:
        """Per category column and Average: the row(s) with the highest value (ties all win)."""
        return best_in_columns(self.table, self.value_columns)

    def is_study(self) -> pd.Series:
        return self.table["benchmark"] == STUDY

    def flagged(self) -> list[str]:
        """The study's printed averages in this view that its own rows do not give."""
        found = []
        for model, text in zip(self.table["model"], self.table["printed average"]):
            text = str(text)
            if text.startswith("⚠"):
                found.append(f"{model}: {text.lstrip('⚠ ')}")
            elif "⚠" in text:
                found.append(f"{model}: printed {text.replace(' ⚠ its rows give', ', its rows give')}")
        return found

    def per_category(self, limit: int = 6) -> pd.DataFrame:
        """Long rows (bar, category, entry, value) of the first ``limit`` rows, for a bar plot."""
        rows = []
        for row in self.table.head(limit).to_dict("records"):
            for category in self.categories:
                value = row[category]
                if pd.notna(value):
                    rows.append({"bar": f"{category} · {_label(row)}", "category": category, "entry": _label(row),
                                 "value": round(float(value), 2)})
        return pd.DataFrame(rows, columns=["bar", "category", "entry", "value"])

    # ----------------------------------------------------------------------- exports
    def _text_rows(self, missing: str, bold: str) -> tuple[list[str], list[list[str]]]:
        best = self.best()
        headers = [c for c in self.table.columns]
        lines = []
        for index, row in self.table.iterrows():
            cells = []
            for column in headers:
                value = row[column]
                if column in self.value_columns or column in NUMERIC_INFO:
                    text = missing if pd.isna(value) else f"{float(value):.2f}"
                    if column in best and index in best[column]:
                        text = bold.format(text)
                else:
                    text = missing if value is None or value == "" or (isinstance(value, float) and math.isnan(value)) \
                        else str(value)
                cells.append(text)
            lines.append(cells)
        return headers, lines

    def to_csv(self) -> str:
        """All columns, values in percent, as ``iadbe benchmark``'s CSV keeps numbers (no marking)."""
        return self.table.to_csv(index=False, float_format="%.4g")

    def to_markdown(self) -> str:
        """A Markdown table, best per column in **bold**, "-" where a value is missing (as ``results.md``)."""
        headers, rows = self._text_rows("-", "**{}**")
        title = f"{TITLES.get(self.metric, self.metric)}, {self.dataset} (percent; best per column in bold)"
        lines = [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(text.replace("|", "/") for text in cells) + " |" for cells in rows]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        """A booktabs tabular as ``results.tex``: best per column in bold, ``--`` where missing."""
        headers, rows = self._text_rows("--", r"\textbf{{{}}}")
        align = "".join("r" if h in self.value_columns or h in NUMERIC_INFO else "l" for h in headers)
        lines = [f"% {TITLES.get(self.metric, self.metric)} ({self.dataset})",
                 r"\begin{tabular}{" + align + "}", r"\toprule",
                 " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
        lines += [" & ".join(text if text.startswith(r"\textbf") else latex_escape(text.replace("⚠", "(!)"))
                             for text in cells) + r" \\" for cells in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path, stem: str = "leaderboard") -> dict[str, Path]:
        """``<stem>.csv``, ``.md`` and ``.tex`` in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        files = {"csv": folder / f"{stem}.csv", "md": folder / f"{stem}.md", "tex": folder / f"{stem}.tex"}
        files["csv"].write_text(self.to_csv(), encoding="utf-8")
        files["md"].write_text(self.to_markdown(), encoding="utf-8")
        files["tex"].write_text(self.to_latex(), encoding="utf-8")
        return files


# --------------------------------------------------------------------------- colour and marking
def value_colour(value: float, low: float = 50.0, high: float = 100.0) -> str:
    """A light background from red (``low`` and below: chance for AUROC) to green (``high``)."""
    share = min(max((value - low) / (high - low), 0.0), 1.0)
    return f"background-color: hsl({round(120 * share)}, 70%, 86%)"


BEST_STYLE = "font-weight: bold; text-decoration: underline"


def table_cells(table: pd.DataFrame, value_columns: Sequence[str], best: Mapping[str, set[int]] | None = None,
                low: float = 50.0) -> dict[str, Any]:
    """``table`` as headers, data (None where missing), the text shown (two decimals, "-" where missing) and a
    CSS style per cell: ``value_columns`` coloured by value, the best per column bold and underlined. The
    shape of a ``gr.Dataframe`` value with styling; built directly, as a pandas Styler costs about 1 s per
    1,000 rows to convert."""
    best = best or {}
    headers = [str(c) for c in table.columns]
    numeric = [c in value_columns or c in NUMERIC_INFO or pd.api.types.is_float_dtype(table[c]) for c in headers]
    coloured = [c in value_columns for c in headers]
    marks = [best.get(c, set()) for c in headers]
    data, shown, styles = [], [], []
    for index, row in zip(table.index, table.itertuples(index=False, name=None)):
        values, texts, css = [], [], []
        for value, is_number, colour, marked in zip(row, numeric, coloured, marks):
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            values.append(None if missing else value)
            texts.append("-" if missing else (f"{float(value):.2f}" if is_number else str(value)))
            parts = [] if missing or not colour else [value_colour(float(value), low)]
            if index in marked:
                parts.append(BEST_STYLE)
            css.append("; ".join(parts))
        data.append(values)
        shown.append(texts)
        styles.append(css)
    return {"headers": headers, "data": data, "metadata": {"display_value": shown, "styling": styles}}


def best_in_columns(table: pd.DataFrame, columns: Iterable[str]) -> dict[str, set[int]]:
    """Per column: the row index(es) with the highest value (ties all win)."""
    found = {}
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        if not np.isnan(values).all():
            top = np.nanmax(values)
            found[column] = {table.index[i] for i in np.flatnonzero(np.abs(values - top) <= 1e-9)}
    return found
