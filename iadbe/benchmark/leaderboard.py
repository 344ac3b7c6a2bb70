"""The leaderboard: the study's tables and IADBE's benchmark runs in one tidy table, filtered and exported.

The Space's Benchmark tab shows it on opening; ``iadbe benchmark`` writes the per-benchmark reports
(:mod:`iadbe.benchmark.report`). Both read the same things:

- the study's per-category tables (``study_tables.json`` via :func:`iadbe.benchmark.study.study_tables`),
  one cell per (dataset, metric, model, category), its printed averages checked against its own rows
  (:func:`iadbe.benchmark.study.check_study_averages`);
- every benchmark folder (``<folder>/runs/<run_id>.json`` records) under the roots the caller names,
  aggregated with :func:`iadbe.benchmark.report.aggregate` and grouped by benchmark (the folder), with the
  settings that explain a number: backbone, image size, epochs trained, how thresholds were chosen, the F1
  at the calibrated thresholds and the oracle F1.

:func:`load_leaderboard` caches each folder by the names, sizes and times of its records, so a filter
change re-reads nothing (``bench/leaderboard.py`` times it with 1,000 records; ``tests/test_leaderboard.py``
and the Benchmark tab's browser test check it).

    >>> board = load_leaderboard({"docs/benchmark": Path("docs/benchmark")})  # doctest: +SKIP
    >>> view = board.view("visa", "image_AUROC")                              # doctest: +SKIP
    >>> print(view.to_markdown())                                             # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from iadbe.benchmark.report import METRIC_TITLES, aggregate, latex_escape
from iadbe.benchmark.runs import load_records, runs_dir
from iadbe.benchmark.study import AverageCheck, check_study_averages, study_tables

STUDY = "study"
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
TITLES = {**METRIC_TITLES, "image_F1": "Image F1 (oracle threshold for IADBE, as the study chose its own)",
          "unified_image_AUROC": "Image AUROC, one model trained on one category, tested on all (study: unified)",
          "multiclass_image_AUROC": "Image AUROC, one model trained on all categories",
          "unified_pixel_AUROC": "Pixel AUROC, trained on one category, tested on all",
          "unified_pixel_AUPRO": "PRO, trained on one category, tested on all",
          "multiclass_pixel_AUROC": "Pixel AUROC, one model trained on all categories",
          "multiclass_pixel_AUPRO": "PRO, one model trained on all categories"}
#: The leaderboard's columns after the categories and the averages: what explains a row's numbers.
INFO_COLUMNS = ("backbone", "image size", "epochs", "thresholds", "training s", "F1 calibrated", "F1 oracle")
NUMERIC_INFO = ("epochs", "training s", "F1 calibrated", "F1 oracle")
CELL_COLUMNS = ("source", "benchmark", "dataset", "metric", "model", "category", "value", "backbone",
                "image size", "epochs", "thresholds", "training s", "F1 calibrated", "F1 oracle", "seeds")


# --------------------------------------------------------------------------- cells
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
    share = "" if rate is None else f", {100 * rate:g} % false alarms"
    if rule == RULE:
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


def benchmark_folders(root: Path, depth: int = 3) -> list[Path]:
    """Folders under ``root`` (itself included, ``depth`` levels down) that hold a ``runs/`` folder."""
    found, level = [], [Path(root)]
    for _ in range(depth + 1):
        found += [folder for folder in level if runs_dir(folder).is_dir()]
        level = [child for folder in level if folder.is_dir() for child in sorted(folder.iterdir())
                 if child.is_dir() and child.name != "runs" and not child.name.startswith(".")]
    return found


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What a folder's records are now: (name, size, mtime) of each; a changed record changes it."""
    entries = []
    try:
        with os.scandir(runs_dir(folder)) as found:
            for entry in found:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    try:
                        stat = entry.stat()
                    except OSError:
                        continue
                    entries.append((entry.name, stat.st_size, stat.st_mtime_ns))
    except OSError:
        return ()
    return tuple(sorted(entries))


@functools.lru_cache(maxsize=256)
def _folder_frame(folder: str, benchmark: str, signature: tuple) -> pd.DataFrame:
    """One benchmark folder's cells (cached by its records' signature; never modified by callers)."""
    return pd.DataFrame(run_cells(load_records(Path(folder)), benchmark), columns=list(CELL_COLUMNS))


@functools.lru_cache(maxsize=1)
def _study_frame() -> pd.DataFrame:
    return pd.DataFrame(study_cells(), columns=list(CELL_COLUMNS))


def load_leaderboard(roots: Mapping[str, Path | str]) -> "Leaderboard":
    """The study's cells plus every benchmark folder under ``roots`` ({label: folder}); each benchmark is
    named ``label/<path under the folder>``. Folders whose records did not change are not read again."""
    keys = []
    for label, root in roots.items():
        root = Path(root)
        for folder in benchmark_folders(root):
            relative = folder.relative_to(root).as_posix()
            keys.append((str(folder.resolve()), label if relative == "." else f"{label}/{relative}",
                         _signature(folder)))
    return _board(tuple(keys))


@functools.lru_cache(maxsize=32)
def _board(keys: tuple[tuple[str, str, tuple], ...]) -> "Leaderboard":
    """The board of these folders as they are (a board caches its tables and views: reused while no record
    changes)."""
    frames = [_study_frame(), *(frame for frame in (_folder_frame(*key) for key in keys) if not frame.empty)]
    return Leaderboard(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])


# --------------------------------------------------------------------------- the board and its views
def _checks() -> dict[tuple[str, str, str], AverageCheck]:
    return {(*check.table.split("/", 1), check.model): check for check in check_study_averages()}


@dataclass(frozen=True)
class Leaderboard:
    """Every cell (``cells``: one row per source, benchmark, dataset, metric, model, category)."""

    cells: pd.DataFrame

    @functools.cached_property
    def _tables(self) -> dict[tuple[str, str], pd.DataFrame]:
        return {key: group for key, group in self.cells.groupby(["dataset", "metric"], sort=False)}

    @functools.cached_property
    def _memo(self) -> dict[tuple, Any]:
        return {}

    def datasets(self) -> list[str]:
        """Datasets, the study's first (in the study's order), then those only our runs have."""
        study = list(dict.fromkeys(t["dataset"] for t in study_tables()["tables"].values()))
        study = [d for d in ("mvtec", "visa", "mvtec3d", "kolektor", "cardboard") if d in study] + \
            [d for d in study if d not in ("mvtec", "visa", "mvtec3d", "kolektor", "cardboard")]
        ours = sorted(set(self.cells["dataset"]) - set(study))
        return study + ours

    def metrics(self, dataset: str) -> list[str]:
        present = set(self.cells.loc[self.cells["dataset"] == dataset, "metric"])
        ordered = [m for m in TITLES if m in present]
        return ordered + sorted(present - set(ordered))

    def _slice(self, dataset: str, metric: str) -> pd.DataFrame:
        return self._tables.get((dataset, metric), self.cells.iloc[:0])

    def models(self, dataset: str, metric: str) -> list[str]:
        return sorted(set(self._slice(dataset, metric)["model"]))

    def categories(self, dataset: str, metric: str) -> list[str]:
        """The study's column order where it has the table, then ours."""
        table = study_tables()["tables"].get(f"{dataset}/{metric}")
        present = list(dict.fromkeys(self._slice(dataset, metric)["category"]))
        ordered = [c for c in (table["categories"] if table else []) if c in present]
        return ordered + sorted(set(present) - set(ordered))

    def view(self, dataset: str, metric: str, models: Iterable[str] = (), categories: Iterable[str] = ()
             ) -> "View":
        """One dataset and metric as a wide table: a row per (source, benchmark, model), the Average over
        the categories shown, for the study its printed average (flagged where its own rows do not give it;
        shown only when every category is, as it is the mean over all of them), how many categories the row
        has, a column per category, then the settings. Empty ``models`` / ``categories``: all of them."""
        models, categories = sorted(models or ()), sorted(categories or ())
        key = ("view", dataset, metric, tuple(models), tuple(categories))
        if key not in self._memo:
            self._memo[key] = self._view(dataset, metric, models, categories)
        return self._memo[key]

    def _view(self, dataset: str, metric: str, models: list[str], categories: list[str]) -> "View":
        cells = self._slice(dataset, metric)
        if models:
            cells = cells[cells["model"].isin(models)]
        columns = [c for c in self.categories(dataset, metric) if not categories or c in categories]
        cells = cells[cells["category"].isin(columns)]
        keys = ["source", "benchmark", "model"]
        order = ["model", "benchmark", "Average", "printed average", "categories", *columns, *INFO_COLUMNS]
        if cells.empty:
            return View(dataset, metric, pd.DataFrame(columns=order), columns)
        wide = (cells.drop_duplicates([*keys, "category"]).set_index([*keys, "category"])["value"]
                .unstack("category").reindex(columns=columns))
        info = cells.groupby(keys, sort=False).agg(
            {"backbone": "first", "image size": "first", "thresholds": "first",
             **{column: "mean" for column in NUMERIC_INFO}})
        table = info.join(wide).reset_index()
        values = table[columns]
        table["Average"] = values.mean(axis=1, skipna=True)
        table["categories"] = [f"{n}/{len(columns)}" for n in values.notna().sum(axis=1)]
        misaligned = [model for (d, m, model), check in _CHECKS().items()
                      if (d, m) == (dataset, metric) and check.problem and (not models or model in models)]
        if misaligned:  # rows whose numbers cannot be put in their columns: shown, with the reason, never dropped
            table = pd.concat([table, pd.DataFrame([{"source": STUDY, "benchmark": STUDY, "model": model,
                                                     "thresholds": STUDY_THRESHOLDS} for model in misaligned])],
                              ignore_index=True)
            table["categories"] = [f"{n}/{len(columns)}" for n in table[columns].notna().sum(axis=1)]
        every = len(columns) == len(self.categories(dataset, metric))  # a printed average is over all of them
        table["printed average"] = [self._printed(dataset, metric, source, model) if every else ""
                                    for source, model in zip(table["source"], table["model"])]
        table["_order"] = (table["source"] != STUDY).astype(int)
        table = table.sort_values(["_order", "benchmark", "Average"], ascending=[True, True, False],
                                  na_position="last").drop(columns="_order")
        table = table[order]
        return View(dataset, metric, table.reset_index(drop=True), columns)

    @staticmethod
    def _printed(dataset: str, metric: str, source: str, model: str) -> str:
        if source != STUDY:
            return ""
        check = _CHECKS().get((dataset, metric, model))
        if check is None or check.printed is None or check.problem:
            return "" if check is None or not check.problem else "⚠ row misaligned in the study: a value is missing"
        if check.wrong:
            return f"{check.printed:.2f} ⚠ its rows give {check.recomputed:.2f}"
        return f"{check.printed:.2f}"

    def runs(self, models: Iterable[str] = (), categories: Iterable[str] = (),
             datasets: Iterable[str] = ()) -> pd.DataFrame:
        """IADBE's runs grouped by benchmark: one row per (benchmark, dataset, model), means over its
        categories (those named in ``categories``, else all), with the study's mean over the same categories
        beside our image AUROC (over those the study has)."""
        key = ("runs", tuple(sorted(models or ())), tuple(sorted(categories or ())), tuple(sorted(datasets or ())))
        if key not in self._memo:
            self._memo[key] = self._runs(*key[1:])
        return self._memo[key]

    def _runs(self, models: tuple[str, ...], categories: tuple[str, ...], datasets: tuple[str, ...]) -> pd.DataFrame:
        table = self._all_runs
        for column, chosen in (("model", models), ("category", categories), ("dataset", datasets)):
            if chosen:
                table = table[table[column].isin(chosen)]
        keys = ["benchmark", "dataset", "model"]
        numbers = ["epochs", "training s", "image AUROC", "study image AUROC", "pixel AUROC", "PRO", "F1 calibrated",
                   "F1 oracle"]
        columns = [*keys, "categories", "backbone", "image size", "thresholds", *numbers]
        if table.empty:
            return pd.DataFrame(columns=columns)
        grouped = table.groupby(keys, sort=True)
        summary = grouped[numbers].mean()
        summary["categories"] = grouped["category"].agg(
            lambda names: ", ".join(names) if len(names) <= 3 else f"{len(names)} categories")
        for column in ("backbone", "image size", "thresholds"):
            summary[column] = grouped[column].first()
        return summary.reset_index()[columns]

    @functools.cached_property
    def _all_runs(self) -> pd.DataFrame:
        ours = self.cells[(self.cells["source"] == OURS) & ~self.cells["metric"].str.startswith(("unified_",
                                                                                                   "multiclass_"))]
        columns = ["benchmark", "dataset", "model", "category", "backbone", "image size", "epochs", "thresholds",
                   "training s", "image AUROC", "study image AUROC", "pixel AUROC", "PRO", "F1 calibrated",
                   "F1 oracle"]  # one row per category: runs() groups them
        if ours.empty:
            return pd.DataFrame(columns=columns)
        keys = ["benchmark", "dataset", "model", "category"]
        wide = ours.drop_duplicates([*keys, "metric"]).set_index([*keys, "metric"])["value"].unstack("metric")
        info = ours.groupby(keys).agg({"backbone": "first", "image size": "first", "thresholds": "first",
                                       "epochs": "first", "training s": "first", "F1 calibrated": "first",
                                       "F1 oracle": "first"})
        table = info.join(wide).reset_index()
        study = self._slice_study("image_AUROC")
        table["study image AUROC"] = [study.get((d, m, c)) for d, m, c in
                                      zip(table["dataset"], table["model"], table["category"])]
        table = table.rename(columns={"image_AUROC": "image AUROC", "pixel_AUROC": "pixel AUROC",
                                      "pixel_AUPRO": "PRO"})
        return table.reindex(columns=columns).sort_values(keys).reset_index(drop=True)

    def _slice_study(self, metric: str) -> dict[tuple[str, str, str], float]:
        key = ("study", metric)
        if key not in self._memo:
            study = self.cells[(self.cells["source"] == STUDY) & (self.cells["metric"] == metric)]
            self._memo[key] = {(d, m, c): v for d, m, c, v in
                               zip(study["dataset"], study["model"], study["category"], study["value"])}
        return self._memo[key]

    # ----------------------------------------------------------------------- plot data
    def auroc_vs_time(self, dataset: str) -> pd.DataFrame:
        """Per (source, benchmark, model): mean image AUROC over its categories and training seconds per
        category (and its log10, for a readable axis from seconds to days). The study's time is its
        per-dataset total (``summary``) over its number of categories."""
        key = ("time", dataset)
        if key not in self._memo:
            self._memo[key] = self._auroc_vs_time(dataset)
        return self._memo[key]

    def _auroc_vs_time(self, dataset: str) -> pd.DataFrame:
        rows = []
        cells = self._slice(dataset, "image_AUROC")
        table = study_tables()["tables"].get(f"{dataset}/image_AUROC")
        summary = study_tables().get("summary", {})
        for (source, benchmark, model), group in cells.groupby(["source", "benchmark", "model"]):
            if source == STUDY:
                time_s = (summary.get(model, {}).get(dataset) or {}).get("time_s")
                seconds = None if time_s is None or not table else time_s / len(table["categories"])
            else:
                seconds = group["training s"].mean()
            if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
                continue
            rows.append({"model": model, "source": benchmark if source == OURS else STUDY,
                         "image AUROC": round(float(group["value"].mean()), 2),
                         "training s per category": round(float(seconds), 1),
                         "log10 training s": round(math.log10(max(float(seconds), 0.1)), 3)})
        return pd.DataFrame(rows, columns=["model", "source", "image AUROC", "training s per category",
                                           "log10 training s"])

    def ours_against_study(self, dataset: str, metric: str, models: Iterable[str] = ()) -> pd.DataFrame:
        """Per model that has both: our mean and the study's mean over the same categories (ours pooled over
        benchmarks), as long rows (model, source, bar label, value, categories) for a bar plot."""
        key = ("pairs", dataset, metric, tuple(sorted(models or ())))
        if key not in self._memo:
            self._memo[key] = self._ours_against_study(dataset, metric, key[3])
        return self._memo[key]

    def _ours_against_study(self, dataset: str, metric: str, models: tuple[str, ...]) -> pd.DataFrame:
        cells = self._slice(dataset, metric)
        if models:
            cells = cells[cells["model"].isin(list(models))]
        ours = cells[cells["source"] == OURS]
        study = self._slice_study(metric)
        rows = []
        for model, group in ours.groupby("model"):
            pairs = [(v, study.get((dataset, model, c))) for c, v in zip(group["category"], group["value"])]
            pairs = [(o, s) for o, s in pairs if s is not None]
            if not pairs:
                continue
            for source, value in ((OURS, statistics.fmean(o for o, _ in pairs)),
                                  (STUDY, statistics.fmean(s for _, s in pairs))):
                rows.append({"model": model, "source": source, "bar": f"{model} · {source}",
                             "value": round(value, 2), "categories": len(pairs)})
        return pd.DataFrame(rows, columns=["model", "source", "bar", "value", "categories"])


@functools.lru_cache(maxsize=1)
def _CHECKS() -> dict[tuple[str, str, str], AverageCheck]:  # noqa: N802 - a cached constant
    return _checks()


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
