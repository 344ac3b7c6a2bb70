"""Benchmark records -> aggregated rows -> results.csv / results.md / results.tex and PNG plots.

Averages, spreads and the best value per column are computed here from the records, never typed in.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

METRICS = ("image_AUROC", "image_AUPR", "image_F1", "image_F1_oracle", "image_false_alarm_rate", "image_miss_rate",
           "pixel_AUROC", "pixel_AUPR", "pixel_F1", "pixel_F1_oracle", "pixel_false_alarm_rate", "pixel_miss_rate",
           "pixel_AUPRO")
TABLE_METRICS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")
#: What ``mean_rows`` gives the study comparison: the table metrics and the F1 compared like with like.
COMPARED_METRICS = (*TABLE_METRICS, "image_F1_oracle", "pixel_F1_oracle")
METRIC_TITLES = {"image_AUROC": "Image AUROC", "pixel_AUROC": "Pixel AUROC", "pixel_AUPRO": "Pixel PRO",
                 "image_F1": "Image F1", "image_AUPR": "Image AUPR", "pixel_AUPR": "Pixel AUPR",
                 "pixel_F1": "Pixel F1", "image_F1_oracle": "Image F1 (oracle)",
                 "pixel_F1_oracle": "Pixel F1 (oracle)", "image_false_alarm_rate": "Image false-alarm rate",
                 "image_miss_rate": "Image miss rate", "pixel_false_alarm_rate": "Pixel false-alarm rate",
                 "pixel_miss_rate": "Pixel miss rate"}


@dataclass(frozen=True)
class Cell:
    """Mean and spread (sample std over seeds; 0 for one seed) of a metric, in [0, 1]."""

    mean: float
    std: float
    n: int

    def percent(self, spread: bool = True) -> str:
        text = f"{100 * self.mean:.2f}"
        return f"{text} ± {100 * self.std:.2f}" if spread and self.n > 1 else text


def _cell(values: Sequence[float]) -> Cell | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return None
    return Cell(statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0, len(finite))


def aggregate(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (mode, model, category) over the ok records (seeds pooled), with Cells per metric."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("status") != "ok":
            continue
        mode = record.get("mode", "per_category")
        if mode in ("per_category", "kfold"):  # kfold: the folds pooled like seeds
            groups[(mode, record["model"], record["category"])].append(
                {"metrics": record["metrics"], "record": record})
        else:
            for category, metrics in record.get("per_category", {}).items():
                groups[(mode, record["model"], category)].append({"metrics": metrics, "record": record})
    rows = []
    for (mode, model, category), items in sorted(groups.items()):
        records_ = [item["record"] for item in items]
        row: dict[str, Any] = {"mode": mode, "model": model, "category": category,
                               "backbone": records_[0].get("backbone"), "seeds": sorted({r["seed"] for r in records_}),
                               "trained_on": records_[0].get("category"),
                               "folds": len({r.get("fold") for r in records_}) if mode == "kfold" else None}
        for metric in METRICS:
            row[metric] = _cell([item["metrics"].get(metric, math.nan) for item in items])
        row["training_time_s"] = _cell([r["training_time_s"] for r in records_])
        row["epochs_trained"] = _cell([r.get("epochs_trained") for r in records_])  # absent in older records
        for backend in ("torch", "openvino"):
            row[f"{backend}_ms"] = _cell([r.get("inference_ms", {}).get(backend, {}).get("median_ms", math.nan)
                                          for r in records_])
        row["peak_rss_mb"] = _cell([r.get("peak_rss_mb", math.nan) for r in records_])
        rows.append(row)
    return rows


def mean_rows(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = COMPARED_METRICS,
              mode: str = "per_category") -> list[dict[str, Any]]:
    """Per (model, category) of ``mode``: the mean of each metric (None where missing), as
    :func:`iadbe.benchmark.study.compare_with_study` takes them."""
    return [{"model": r["model"], "category": r["category"],
             **{m: (r[m].mean if r[m] is not None else None) for m in metrics}}
            for r in rows if r["mode"] == mode]


def matrix(rows: Sequence[dict[str, Any]], metric: str, mode: str = "per_category"
           ) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """(models, categories, cells) of one metric: the models x categories table."""
    cells = {(r["model"], r["category"]): r[metric] for r in rows if r["mode"] == mode and r[metric] is not None}
    models = sorted({m for m, _ in cells})
    categories = sorted({c for _, c in cells})
    return models, categories, cells


def averages(models: Sequence[str], categories: Sequence[str], cells: dict[tuple[str, str], Cell]
             ) -> dict[str, tuple[float, int]]:
    """Per model: (mean over the categories it has, how many it has)."""
    found = {}
    for model in models:
        values = [cells[(model, c)].mean for c in categories if (model, c) in cells]
        if values:
            found[model] = (statistics.fmean(values), len(values))
    return found


def best_per_column(models: Sequence[str], columns: dict[str, dict[str, float]]) -> dict[str, set[str]]:
    """Per column: the model(s) with the highest value (ties all win)."""
    best = {}
    for column, values in columns.items():
        present = {m: v for m, v in values.items() if m in models}
        if present:
            top = max(present.values())
            best[column] = {m for m, v in present.items() if math.isclose(v, top, abs_tol=1e-12)}
    return best


def _columns(models, categories, cells, avgs) -> dict[str, dict[str, float]]:
    columns = {c: {m: cells[(m, c)].mean for m in models if (m, c) in cells} for c in categories}
    columns["Average"] = {m: avg for m, (avg, _) in avgs.items()}
    return columns


def markdown_table(rows: Sequence[dict[str, Any]], metric: str, mode: str = "per_category") -> str:
    """Models x categories (+ Average) in percent, best per column in bold, mean ± std over seeds."""
    from iadbe.models import get_spec

    models, categories, cells = matrix(rows, metric, mode)
    if not models:
        return ""
    avgs = averages(models, categories, cells)
    best = best_per_column(models, _columns(models, categories, cells, avgs))
    lines = ["| model | " + " | ".join(categories) + " | Average |",
             "|---|" + "---|" * (len(categories) + 1)]
    for model in models:
        parts = []
        for category in categories:
            cell = cells.get((model, category))
            text = "-" if cell is None else cell.percent()
            parts.append(f"**{text}**" if cell is not None and model in best.get(category, ()) else text)
        avg, count = avgs.get(model, (math.nan, 0))
        text = "-" if count == 0 else f"{100 * avg:.2f}" + ("" if count == len(categories) else f" ({count}/{len(categories)})")
        parts.append(f"**{text}**" if model in best.get("Average", ()) else text)
        lines.append(f"| {get_spec(model).display_name} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def latex_escape(text: str) -> str:
    """``text`` safe in a LaTeX table cell (underscores, percent and ampersand escaped)."""
    return text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def latex_table(rows: Sequence[dict[str, Any]], metric: str, mode: str = "per_category") -> str:
    """The same table as :func:`markdown_table` as a booktabs LaTeX tabular."""
    from iadbe.models import get_spec

    models, categories, cells = matrix(rows, metric, mode)
    if not models:
        return ""
    avgs = averages(models, categories, cells)
    best = best_per_column(models, _columns(models, categories, cells, avgs))
    lines = [r"\begin{tabular}{l" + "r" * (len(categories) + 1) + "}", r"\toprule",
             "Model & " + " & ".join(latex_escape(c) for c in categories) + r" & Average \\", r"\midrule"]
    for model in models:
        parts = []
        for category in categories:
            cell = cells.get((model, category))
            text = "--" if cell is None else cell.percent().replace("±", r"$\pm$")
            parts.append(rf"\textbf{{{text}}}" if cell is not None and model in best.get(category, ()) else text)
        avg, count = avgs.get(model, (math.nan, 0))
        text = "--" if count == 0 else f"{100 * avg:.2f}"
        parts.append(rf"\textbf{{{text}}}" if model in best.get("Average", ()) else text)
        lines.append(latex_escape(get_spec(model).display_name) + " & " + " & ".join(parts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def timing_table(rows: Sequence[dict[str, Any]], mode: str = "per_category") -> str:
    """Per model (mean over categories): training time, per-image inference time (torch, OpenVINO), peak memory."""
    from iadbe.models import get_spec

    per_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["mode"] == mode:
            per_model[row["model"]].append(row)
    lines = ["| model | backbone | epochs trained | training time (s) | torch ms/image | OpenVINO ms/image "
             "| peak memory (MB) |", "|---|---|---|---|---|---|---|"]
    for model, items in sorted(per_model.items()):
        def mean(key: str, digits: int = 1) -> str:
            values = [item[key].mean for item in items if item[key] is not None]
            return f"{statistics.fmean(values):.{digits}f}" if values else "-"
        lines.append(f"| {get_spec(model).display_name} | {items[0]['backbone'] or '-'} | {mean('epochs_trained', 2)} "
                     f"| {mean('training_time_s')} | {mean('torch_ms')} | {mean('openvino_ms')} "
                     f"| {mean('peak_rss_mb', 0)} |")
    return "\n".join(lines)


DECISION_COLUMNS = (("image_F1", "image F1"), ("image_F1_oracle", "oracle"), ("image_false_alarm_rate", "false alarms"),
                    ("image_miss_rate", "misses"), ("pixel_F1", "pixel F1"), ("pixel_F1_oracle", "oracle"),
                    ("pixel_false_alarm_rate", "false alarms"), ("pixel_miss_rate", "misses"))


def decision_table(rows: Sequence[dict[str, Any]], mode: str = "per_category") -> str:
    """Per (model, category): F1 at the calibrated thresholds beside the oracle F1 (the best threshold on the
    test set, the study's way), with the false-alarm and miss rates of the decisions; '' without F1."""
    from iadbe.models import get_spec

    chosen = [r for r in rows if r["mode"] == mode and r.get("image_F1") is not None]
    if not chosen:
        return ""
    lines = ["| model | category | " + " | ".join(title for _, title in DECISION_COLUMNS) + " |",
             "|---|---|" + "---|" * len(DECISION_COLUMNS)]
    for row in chosen:
        cells = [row[key].percent() if row.get(key) is not None else "-" for key, _ in DECISION_COLUMNS]
        lines.append(f"| {get_spec(row['model']).display_name} | {row['category']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Long format: one line per (mode, model, category); metrics as mean and std in [0, 1]."""
    numeric = [*METRICS, "training_time_s", "epochs_trained", "torch_ms", "openvino_ms", "peak_rss_mb"]
    header = ["mode", "model", "backbone", "category", "trained_on", "seeds"]
    header += [f"{name}_{part}" for name in numeric for part in ("mean", "std")]
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for row in rows:
            line = [row["mode"], row["model"], row["backbone"] or "", row["category"], row["trained_on"] or "",
                    " ".join(map(str, row["seeds"]))]
            for name in numeric:
                cell = row[name]
                line += ["", ""] if cell is None else [f"{cell.mean:.6g}", f"{cell.std:.6g}"]
            writer.writerow(line)
    return path


def write_outputs(out: Path, records: Sequence[dict[str, Any]], dataset: str) -> dict[str, Path]:
    """results.csv / .md / .tex and the plots, from every record under ``out``."""
    from iadbe.benchmark.plots import make_plots

    out = Path(out)
    rows = aggregate(records)
    files = {"csv": write_csv(rows, out / "results.csv")}
    files["md"] = out / "results.md"
    files["md"].write_text(results_markdown(rows, records, dataset), encoding="utf-8")
    files["tex"] = out / "results.tex"
    files["tex"].write_text("\n\n".join(
        f"% {METRIC_TITLES[m]} ({dataset})\n{latex_table(rows, m)}" for m in TABLE_METRICS
        if latex_table(rows, m)) + "\n", encoding="utf-8")
    files.update(make_plots(rows, out))
    return files


def results_markdown(rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]], dataset: str) -> str:
    """The whole report: one table per metric and mode, timings, failures."""
    parts = [f"# IADBE benchmark: {dataset}", "",
             "Percent; mean ± std where several seeds ran; best per column in **bold**; the Average column is "
             "the mean over the categories each model has (count shown when fewer). Thresholds (F1) come from "
             "validation data only and every test image is scored."]
    titles = {"per_category": "", "one_to_all": " (trained on one category, tested on each)",
              "unified": " (one model trained on all categories together)",
              "kfold": " (k-fold over the labelled images; mean ± std over the folds)"}
    for mode in ("per_category", "one_to_all", "unified", "kfold"):
        for metric in TABLE_METRICS:
            table = markdown_table(rows, metric, mode)
            if table:
                parts += ["", f"## {METRIC_TITLES[metric]}{titles[mode]}", "", table]
        decisions = decision_table(rows, mode)
        if decisions:
            parts += ["", f"## Decisions at the calibrated thresholds{titles[mode]}", "",
                      "F1 at the thresholds calibrated on validation data beside the oracle F1 (the best "
                      "threshold chosen on the test set, as the study reported F1); false alarms = share of "
                      "good images (pixels) flagged, misses = share of defective images (pixels) not flagged.",
                      "", decisions]
        if any(r["mode"] == mode for r in rows):
            parts += ["", f"## Time and memory{titles[mode]}", "", timing_table(rows, mode)]
    if any(r["mode"] == "kfold" for r in rows):
        from iadbe.benchmark.kfold_report import kfold_markdown

        parts += ["", kfold_markdown(rows, records, compare_study=False)]  # --compare-study adds the study's row
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        parts += ["", "## Failed runs", ""]
        parts += [f"- `{r['run_id']}`: {r.get('reason', 'unknown')}" for r in failed]
    return "\n".join(parts) + "\n"


def comparison_markdown(roots: Sequence[Any]) -> str:
    """The k-fold tables of every benchmark folder under ``roots`` (the app's Benchmark tab), with the study's
    Cardboard row; '' when no folder holds a k-fold run."""
    from pathlib import Path

    from iadbe.benchmark.kfold_report import kfold_markdown
    from iadbe.benchmark.runs import load_records

    records = []
    for root in roots:
        for runs in sorted(Path(root).rglob("runs")):
            if runs.is_dir():
                records += [r for r in load_records(runs.parent) if r.get("mode") == "kfold"]
    if not records:
        return ""
    return kfold_markdown(aggregate(records), records, compare_study=True)
