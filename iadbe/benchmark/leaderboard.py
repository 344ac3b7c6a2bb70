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
from typing import Any, Iterable, Mapping

import pandas as pd

from iadbe.benchmark.leaderboard_cells import OURS, STUDY_THRESHOLDS, run_cells, study_cells
from iadbe.benchmark.leaderboard_view import NUMERIC_INFO, STUDY, TITLES, View  # noqa: F401 (public names)
from iadbe.benchmark.runs import load_records, runs_dir
from iadbe.benchmark.study import AverageCheck, check_study_averages, study_tables

#: The leaderboard's columns after the categories and the averages: what explains a row's numbers.
INFO_COLUMNS = ("backbone", "image size", "epochs", "thresholds", "training s", "F1 calibrated", "F1 oracle")
CELL_COLUMNS = ("source", "benchmark", "dataset", "metric", "model", "category", "value", "backbone",
                "image size", "epochs", "thresholds", "training s", "F1 calibrated", "F1 oracle", "seeds")


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


