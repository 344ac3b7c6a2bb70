"""Benchmark tab: run the benchmark engine (``iadbe.benchmark``) and browse stored results.

The engine is imported inside the handlers (it imports the training stack when it runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from iadbe import constants
from iadbe.app.common import fail, minutes_cap, server_folder, user_errors
from iadbe.data.kinds import KINDS

STUDY_NOTE = """\
### The IADBE study (reference)

The IADBE study benchmarked anomalib 1.x detectors with ResNet-18 / Wide-ResNet-50 backbones and
selected checkpoints and thresholds **on the test set**, so its numbers are upper bounds. IADBE's runs fit
thresholds on validation data only and score the whole test set. Each run is its own process; running
the same benchmark again skips finished runs. Its tables are stored in the package
(`iadbe/benchmark/study_tables.json`); the comparison below says where its printed averages are wrong.
"""
RESULT_SUFFIXES = {".csv", ".json", ".md", ".tex", ".txt", ".png"}
DATASETS = list(KINDS)


def result_roots() -> list[Path]:
    """Folders the results browser may read (and nothing outside them)."""
    from iadbe.benchmark import RESULTS_DIR

    roots = [Path(RESULTS_DIR), constants.PROJECT_DIR / "docs" / "benchmark"]
    return [root for root in roots if root.is_dir()]


@user_errors
def run_benchmark(models: Any, dataset: Any, root: Any, categories: Any, image_size: Any,
                  max_train_images: Any, max_train_minutes: Any = 0,
                  progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
    """``/benchmark``: run (or resume) models x categories; returns (rows, markdown report, plot, comparison)."""
    from iadbe import benchmark
    from iadbe.app.startup import import_heavy_libraries
    from iadbe.benchmark.runs import split_names

    import_heavy_libraries()

    names = split_names(models)
    if not names:
        raise fail("Name at least one model, e.g. padim, patchcore.")
    kind = str(dataset or "mvtec3d")
    if kind not in DATASETS:
        raise fail(f"Unknown dataset kind {kind!r}.")
    folder = server_folder(str(root or "").strip()) if str(root or "").strip() else None
    if folder is None:
        raise fail("Type the dataset folder on the server (under the app's data folders).")
    size = int(image_size or 256)
    limit = int(max_train_images or 0) or None
    time_cap = minutes_cap(max_train_minutes)
    result = benchmark.run_benchmark(names, kind, folder, split_names(categories) or None, image_size=size,
                                     max_train_images=limit, max_train_minutes=time_cap,
                                     out=Path(benchmark.RESULTS_DIR) / kind,
                                     progress=lambda fraction, message: progress(fraction, desc=message))
    return _result_views(result.out, kind)


def _result_views(out: Path, kind: str) -> tuple:
    from iadbe.benchmark import aggregate, compare_with_study, format_comparison, load_records
    from iadbe.benchmark.report import mean_rows

    rows = [r for r in aggregate(load_records(out)) if r["mode"] == "per_category"]
    table = [[r["model"], r["category"], r["backbone"] or "-",
              *[None if r[m] is None else round(100 * r[m].mean, 2) for m in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")],
              None if r["training_time_s"] is None else round(r["training_time_s"].mean, 1),
              None if r["openvino_ms"] is None else round(r["openvino_ms"].mean, 1)] for r in rows]
    report = (out / "results.md").read_text(encoding="utf-8") if (out / "results.md").is_file() else ""
    plot = out / "auroc_vs_time.png"
    flat = mean_rows(rows)
    comparison = format_comparison(compare_with_study(flat, kind), kind) if flat else ""
    return table, report, str(plot) if plot.is_file() else None, comparison


@user_errors
def list_results() -> Any:
    """``/benchmark_results``: the result files found (csv, json, md, png ...)."""
    files = [str(p) for root in result_roots() for p in sorted(root.rglob("*"))
             if p.is_file() and p.suffix.lower() in RESULT_SUFFIXES]
    return gr.update(choices=files, value=files[0] if files else None)


@user_errors
def show_result(path: Any) -> tuple:
    """``/benchmark_result``: one result file as (table, text, image)."""
    if not path:
        return gr.update(value=[]), "", None
    file = Path(str(path)).resolve()
    if not any(file.is_relative_to(root.resolve()) for root in result_roots()) or not file.is_file():
        raise fail("Only files of the benchmark results folders can be shown.")
    if file.suffix.lower() in {".png", ".jpg"}:
        return gr.update(value=[]), "", str(file)
    if file.suffix.lower() == ".csv":
        import csv

        with file.open(newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
        if not lines:
            return gr.update(value=[]), "(empty file)", None
        import pandas as pd

        return pd.DataFrame(lines[1:], columns=lines[0]), "", None
    return gr.update(value=[]), file.read_text(encoding="utf-8", errors="replace")[:100_000], None


def build() -> None:
    """The Benchmark tab's components (inside an open ``gr.Tab``)."""
    gr.Markdown(STUDY_NOTE)
    with gr.Row():
        models = gr.Textbox(value="padim, patchcore", label="models (comma separated)")
        dataset = gr.Dropdown(DATASETS, value="mvtec3d", label="dataset kind")
        root = gr.Textbox(value=str(constants.SHARED_DATA / "mvtec_3d"), label="dataset root on the server")
        categories = gr.Textbox(label="categories (comma separated; empty = all)")
    with gr.Row():
        image_size = gr.Slider(64, 512, value=256, step=32, label="image size")
        max_train = gr.Number(value=0, precision=0, label="max train images (0 = all)")
        max_minutes = gr.Number(value=0, minimum=0, label="max training minutes per model (0 = no limit)")
        start = gr.Button("Run benchmark", variant="primary")
    table = gr.Dataframe(headers=["model", "category", "backbone", "image AUROC", "pixel AUROC", "PRO",
                                  "training s", "OpenVINO ms"], label="results", interactive=False)
    with gr.Row():
        plot = gr.Image(label="image AUROC vs training time", interactive=False)
        comparison = gr.Textbox(label="compared with the study", lines=12)
    report = gr.Markdown()
    start.click(run_benchmark, [models, dataset, root, categories, image_size, max_train, max_minutes],
                [table, report, plot, comparison], api_name="benchmark", concurrency_limit=1, concurrency_id="train")
    gr.Markdown("#### Results browser")
    with gr.Row():
        files = gr.Dropdown(label="result file", choices=[], scale=4)
        refresh = gr.Button("↻", scale=0, min_width=60)
    shown_table = gr.Dataframe(label="table", interactive=False)
    shown_text = gr.Textbox(lines=10, label="file")
    shown_image = gr.Image(label="plot", interactive=False)
    refresh.click(list_results, None, files, api_name="benchmark_results")
    files.change(show_result, files, [shown_table, shown_text, shown_image], api_name="benchmark_result")
