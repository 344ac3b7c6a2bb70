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
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

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
    for path in runs_dir(folder).glob("*.json"):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


@functools.lru_cache(maxsize=256)
def _folder_cells(folder: str, benchmark: str, signature: tuple) -> tuple[dict[str, Any], ...]:
    return tuple(run_cells(load_records(Path(folder)), benchmark))


@functools.lru_cache(maxsize=1)
def _study_frame() -> pd.DataFrame:
    return pd.DataFrame(study_cells(), columns=list(CELL_COLUMNS))


def load_leaderboard(roots: Mapping[str, Path | str]) -> "Leaderboard":
    """The study's cells plus every benchmark folder under ``roots`` ({label: folder}); each benchmark is
    named ``label/<path under the folder>``. Folders whose records did not change are not read again."""
    frames = [_study_frame()]
    for label, root in roots.items():
        root = Path(root)
        for folder in benchmark_folders(root):
            relative = folder.relative_to(root).as_posix()
            name = label if relative == "." else f"{label}/{relative}"
            cells = _folder_cells(str(folder.resolve()), name, _signature(folder))
            if cells:
                frames.append(pd.DataFrame(list(cells), columns=list(CELL_COLUMNS)))
    return Leaderboard(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])


# --------------------------------------------------------------------------- the board and its views
def _checks() -> dict[tuple[str, str, str], AverageCheck]:
    return {(*check.table.split("/", 1), check.model): check for check in check_study_averages()}


@dataclass(frozen=True)
class Leaderboard:
    """Every cell (``cells``: one row per source, benchmark, dataset, metric, model, category)."""

    cells: pd.DataFrame

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
        cells = self.cells
        return cells[(cells["dataset"] == dataset) & (cells["metric"] == metric)]

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
        """One dataset and metric as a wide table: a row per (source, benchmark, model), a column per
        category, the Average over the categories shown and, for the study, its printed average (flagged
        where its own rows do not give it). Empty ``models`` / ``categories``: all of them."""
        models, categories = list(models or ()), list(categories or ())
        cells = self._slice(dataset, metric)
        if models:
            cells = cells[cells["model"].isin(models)]
        columns = [c for c in self.categories(dataset, metric) if not categories or c in categories]
        cells = cells[cells["category"].isin(columns)]
        keys = ["source", "benchmark", "model"]
        order = ["model", "benchmark", *columns, "Average", "printed average", "categories", *INFO_COLUMNS]
        if cells.empty:
            return View(dataset, metric, pd.DataFrame(columns=order), columns)
        wide = cells.pivot_table(index=keys, columns="category", values="value", aggfunc="first")
        wide = wide.reindex(columns=columns)
        info = cells.groupby(keys, sort=False).agg(
            {"backbone": "first", "image size": "first", "thresholds": "first",
             **{column: "mean" for column in NUMERIC_INFO}})
        table = info.join(wide).reset_index()
        values = table[columns]
        table["Average"] = values.mean(axis=1, skipna=True)
        table["categories"] = [f"{n}/{len(columns)}" for n in values.notna().sum(axis=1)]
        table["printed average"] = [self._printed(dataset, metric, source, model)
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
        if check is None or check.printed is None:
            return "" if check is None or not check.problem else "row misaligned in the study"
        if check.wrong:
            return f"{check.printed:.2f} ⚠ its rows give {check.recomputed:.2f}"
        return f"{check.printed:.2f}"

    def runs(self, models: Iterable[str] = (), categories: Iterable[str] = (),
             datasets: Iterable[str] = ()) -> pd.DataFrame:
        """IADBE's runs, one row per (benchmark, dataset, model, category), grouped by benchmark, with the
        study's cell beside our image AUROC."""
        ours = self.cells[(self.cells["source"] == OURS) & ~self.cells["metric"].str.startswith(("unified_",
                                                                                                   "multiclass_"))]
        for column, chosen in (("model", models), ("category", categories), ("dataset", datasets)):
            chosen = list(chosen or ())
            if chosen:
                ours = ours[ours[column].isin(chosen)]
        columns = ["benchmark", "dataset", "model", "category", "backbone", "image size", "epochs", "thresholds",
                   "training s", "image AUROC", "study image AUROC", "pixel AUROC", "PRO", "F1 calibrated",
                   "F1 oracle"]
        if ours.empty:
            return pd.DataFrame(columns=columns)
        keys = ["benchmark", "dataset", "model", "category"]
        wide = ours.pivot_table(index=keys, columns="metric", values="value", aggfunc="first")
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
        study = self.cells[(self.cells["source"] == STUDY) & (self.cells["metric"] == metric)]
        return {(d, m, c): v for d, m, c, v in zip(study["dataset"], study["model"], study["category"], study["value"])}

    # ----------------------------------------------------------------------- plot data
    def auroc_vs_time(self, dataset: str) -> pd.DataFrame:
        """Per (source, benchmark, model): mean image AUROC over its categories and training seconds per
        category. The study's time is its per-dataset total (``summary``) over its number of categories."""
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
                         "training s per category": round(float(seconds), 1)})
        return pd.DataFrame(rows, columns=["model", "source", "image AUROC", "training s per category"])

    def ours_against_study(self, dataset: str, metric: str, models: Iterable[str] = ()) -> pd.DataFrame:
        """Per model that has both: our mean and the study's mean over the same categories (ours pooled over
        benchmarks), as long rows (model, source, bar label, value, categories) for a bar plot."""
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
        return [f"{model}: printed {text.replace(' ⚠ its rows give', ', its rows give')}"
                for model, text in zip(self.table["model"], self.table["printed average"]) if "⚠" in str(text)]

    def per_category(self, limit: int = 6) -> pd.DataFrame:
        """Long rows (bar, category, entry, value) of the first ``limit`` rows, for a bar plot."""
        rows = []
        for _, row in self.table.head(limit).iterrows():
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


def styled(table: pd.DataFrame, value_columns: Sequence[str], best: Mapping[str, set[int]] | None = None,
           low: float = 50.0) -> Any:
    """A pandas Styler of ``table``: cells coloured by value, the best per column bold and underlined, numbers
    with two decimals and "-" where missing (what ``gr.Dataframe`` shows as it is)."""
    best = best or {}
    numeric = [c for c in table.columns if c in value_columns or c in NUMERIC_INFO
               or pd.api.types.is_numeric_dtype(table[c])]

    def style_column(column: pd.Series) -> list[str]:
        if column.name not in value_columns:
            return [""] * len(column)
        marks = best.get(column.name, set())
        return [";".join(part for part in ((value_colour(float(v), low) if pd.notna(v) else ""),
                                           (BEST_STYLE if i in marks else "")) if part)
                for i, v in column.items()]

    return (table.style.apply(style_column, axis=0)
            .format({c: "{:.2f}" for c in numeric}, na_rep="-")
            .hide(axis="index"))


def best_in_columns(table: pd.DataFrame, columns: Iterable[str]) -> dict[str, set[int]]:
    """Per column: the row index(es) with the highest value (ties all win)."""
    found = {}
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce")
        if values.notna().any():
            top = values.max()
            found[column] = {i for i, v in values.items() if pd.notna(v) and math.isclose(v, top, abs_tol=1e-9)}
    return found
