"""Benchmark tab: the leaderboard (the study's tables and IADBE's runs, shown on opening), the benchmark
engine's form, and the results browser.

The tables, averages, flags and exports come from :mod:`iadbe.benchmark.leaderboard`; the leaderboard's
handlers (:mod:`iadbe.app.leaderboard_tab`) turn the filters into its calls and its frames into components.
The engine is imported inside the handlers (it imports the training stack when it runs).

Which benchmark folders a visitor sees follows ``iadbe.workspaces``: the runs shipped in ``docs/benchmark``
and the server's results folder for everyone; in shared mode (a public Space) the runs a visitor starts
here go to their own workspace and only they see them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from iadbe import constants
from iadbe.app.common import fail, minutes_cap, server_folder, user_errors, visitor_workspace
from iadbe.app.leaderboard_tab import BAR_ROWS, LEADERBOARD_OUTPUTS, export_leaderboard, leaderboard, \
    leaderboard_on_filter, own_results, result_roots
from iadbe.data.kinds import KINDS

STUDY_NOTE = """\
### Leaderboard: the IADBE study and the runs on this server

The IADBE study benchmarked anomalib 1.x detectors with ResNet-18 / Wide-ResNet-50 backbones and chose
checkpoints and thresholds **on the test set**, so its numbers are upper bounds. IADBE's runs (rows with a
benchmark name) fit thresholds on validation data only and score the whole test set. Percent; the best per
column is **bold and underlined**; cells run from red (50, chance for AUROC) to green (100). *Average* is the
mean over the categories shown; *printed average* is the study's own (over all its categories), marked ⚠
where its rows do not give it.
Click a column header to sort, a cell to fill the run form below with its model, dataset and category.
"""
RESULT_SUFFIXES = {".csv", ".json", ".md", ".tex", ".txt", ".png"}
DATASETS = list(KINDS)
#: Where each dataset kind lies under the server's data folder (``constants.SHARED_DATA``).
DATASET_FOLDERS = {"mvtec3d": "mvtec_3d", "mvtec": "mvtec_ad", "visa": "visa", "kolektor": "kolektorsdd",
                   "btech": "btech"}


def where_choices() -> list[tuple[str, str]]:
    """Where the tab may run a benchmark: this server, and the Ray cluster configured on it (if any)."""
    choices = [("this server", "local")]
    if constants.RAY_ADDRESS:
        choices.append(("the Ray cluster configured on this server", "ray"))
    return choices


def executor_for(where: Any) -> Any:
    """The executor for the form's choice; the cluster's address is the server's, never the visitor's."""
    from iadbe.benchmark.executors import make_executor

    where = str(where or "local")
    if where not in {value for _, value in where_choices()}:
        raise fail("This server has no Ray cluster configured (IADBE_RAY_ADDRESS): the benchmark runs here."
                   if where == "ray" else f"Unknown place to run {where!r}: choose this server or the Ray cluster.")
    return make_executor("ray", address=constants.RAY_ADDRESS) if where == "ray" else make_executor("local")


@user_errors
def run_benchmark(models: Any, dataset: Any, root: Any, categories: Any, image_size: Any,
                  max_train_images: Any, max_train_minutes: Any = 0, where: Any = "local",
                  progress: gr.Progress = gr.Progress(),  # noqa: B008
                  request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> tuple:
    """``/benchmark``: run (or resume) models x categories, here or on the server's Ray cluster (``where``:
    ``local`` or ``ray``); the progress shows how many runs are done, running and failed. Returns (rows,
    markdown report, plot, comparison)."""
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
    executor = executor_for(where)
    workspace = visitor_workspace(request, profile)
    result = benchmark.run_benchmark(names, kind, folder, split_names(categories) or None, image_size=size,
                                     max_train_images=limit, max_train_minutes=time_cap,
                                     out=own_results(workspace) / kind, executor=executor,
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


def _form_root(kind: str) -> str:
    folder = DATASET_FOLDERS.get(kind)
    return str(constants.SHARED_DATA / folder) if folder else ""


@user_errors
def pick_cell(table: Any, dataset: Any, evt: gr.SelectData) -> tuple:
    """A cell of the leaderboard or the runs table -> the run form filled with its model, dataset and
    category (every category of the row when the cell is not a category's)."""
    columns = [str(c) for c in getattr(table, "columns", [])]
    row = list(evt.row_value or [])
    if not columns or len(row) != len(columns):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
    values = dict(zip(columns, row))
    column = columns[evt.index[1]] if isinstance(evt.index, (list, tuple)) else ""
    kind = str(values.get("dataset") or dataset or "")
    if "categories" in values and "benchmark" in values and "dataset" in values:  # the runs table
        category = ",".join(c.strip() for c in str(values["categories"]).split(",")) \
            if not str(values["categories"]).endswith(" categories") else ""
    else:
        from iadbe.benchmark.leaderboard import INFO_COLUMNS

        info = {"benchmark", "model", "Average", "categories", "printed average", *INFO_COLUMNS}
        category = "" if column in info else column
    model = str(values.get("model") or "")
    size = str(values.get("image size") or "")
    form_kind = kind if kind in DATASETS else "folder"
    root = _form_root(kind)
    where = f"{category} of {kind}" if category else f"every category of {kind}"
    note = f"Run form filled: **{model}** on {where}. Press **Run benchmark** to start."
    if not root or not Path(root).is_dir():
        note += (f" {kind} is not among this server's data folders ({constants.SHARED_DATA}): type the folder it "
                 "lies in.")
    return (model, form_kind, root, category, int(size) if size.isdigit() else gr.skip(), note)


@user_errors
def kfold_comparison(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> str:
    """The k-fold comparison of supervised and anomaly detectors found in the results folders."""
    from iadbe.benchmark.report import comparison_markdown

    found = comparison_markdown(list(result_roots(visitor_workspace(request, profile)).values()))
    return found or "No k-fold runs yet: `iadbe benchmark ... --models padim,patchcore,unet_lite0 --protocol kfold`."


# --------------------------------------------------------------------------- results browser
@user_errors
def list_results(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> Any:
    """``/benchmark_results``: the result files found (csv, json, md, png ...)."""
    roots = result_roots(visitor_workspace(request, profile))
    files = [str(p) for root in roots.values() for p in sorted(root.rglob("*"))
             if p.is_file() and p.suffix.lower() in RESULT_SUFFIXES]
    first = next((f for f in files if f.endswith("results.md")), files[0] if files else None)
    return gr.update(choices=files, value=first)


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        return [pair for key, value in data.items() for pair in _flatten(value, f"{prefix}{key}.")]
    text = json.dumps(data) if isinstance(data, list) else str(data)
    return [(prefix.rstrip("."), text[:300])]


@user_errors
def show_result(path: Any, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> tuple:
    """``/benchmark_result``: one result file as (table, text, image); the table has the file's own column
    names (a CSV's header; "field" and "value" for a JSON record) and is hidden for other files."""
    import pandas as pd

    hidden = gr.update(value=None, visible=False)
    if not path:
        return hidden, "", None
    file = Path(str(path)).resolve()
    roots = result_roots(visitor_workspace(request, profile)).values()
    if not any(file.is_relative_to(root.resolve()) for root in roots) or not file.is_file():
        raise fail("Only files of the benchmark results folders can be shown.")
    suffix = file.suffix.lower()
    if suffix in {".png", ".jpg"}:
        return hidden, "", str(file)
    if suffix == ".csv":
        import csv

        with file.open(newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
        if not lines:
            return hidden, "(empty file)", None
        return gr.update(value=pd.DataFrame(lines[1:], columns=lines[0]), visible=True), "", None
    text = file.read_text(encoding="utf-8", errors="replace")
    if suffix == ".json":
        try:
            pairs = _flatten(json.loads(text))
        except ValueError:
            pairs = []
        if pairs:
            return gr.update(value=pd.DataFrame(pairs, columns=["field", "value"]), visible=True), "", None
    return hidden, text[:100_000], None


# --------------------------------------------------------------------------- layout
def build() -> dict[str, Any]:
    """The Benchmark tab's components (inside an open ``gr.Tab``); :func:`on_load` fills them."""
    from iadbe.benchmark.leaderboard import TITLES

    gr.Markdown(STUDY_NOTE)
    # the choices depend on the results found when a page opens (on_load); any value is accepted here and
    # the handler keeps only what the board has
    with gr.Row():
        dataset_filter = gr.Dropdown(label="dataset", choices=["mvtec"], value="mvtec", allow_custom_value=True,
                                     elem_id="lb-dataset", scale=1)
        metric_filter = gr.Dropdown(label="metric", choices=[(TITLES["image_AUROC"], "image_AUROC")],
                                    value="image_AUROC", allow_custom_value=True, elem_id="lb-metric", scale=2)
        model_filter = gr.Dropdown(label="models (empty = all)", choices=[], multiselect=True, allow_custom_value=True,
                                   elem_id="lb-models", scale=2)
        category_filter = gr.Dropdown(label="categories (empty = all)", choices=[], multiselect=True,
                                      allow_custom_value=True, elem_id="lb-categories", scale=2)
    summary = gr.Markdown(elem_id="lb-summary")
    board = gr.Dataframe(label="leaderboard", interactive=False, elem_id="leaderboard", max_height=720,
                         pinned_columns=2, wrap=False)
    with gr.Row():
        export = gr.Button("Export this table (CSV, Markdown, LaTeX)", scale=0, min_width=320)
        exported = gr.File(label="exported", file_count="multiple", interactive=False, scale=3, height=120)
    with gr.Row():
        time_plot = gr.ScatterPlot(x="log10 training s", y="image AUROC", color="source",
                                   tooltip=["model", "source", "image AUROC", "training s per category"],
                                   title="Image AUROC against training time (per category)",
                                   x_title="training time per category, log10 seconds", elem_id="lb-time-plot")
        ours_plot = gr.BarPlot(x="bar", y="value", color="source", title="Our runs against the study, per model "
                               "(same categories)", x_label_angle=-45, sort=None, elem_id="lb-ours-plot")
    category_plot = gr.BarPlot(x="bar", y="value", color="entry", x_label_angle=-60, sort=None,
                               title=f"Per category (the table's first {BAR_ROWS} rows)", elem_id="lb-category-plot")
    gr.Markdown("#### IADBE runs, by benchmark")
    runs = gr.Dataframe(label="runs", interactive=False, elem_id="lb-runs", max_height=420, wrap=False)

    gr.Markdown("#### Supervised vs anomaly detectors (k-fold; `iadbe benchmark --protocol kfold`)")
    kfold = gr.Markdown(elem_id="bench-kfold")

    gr.Markdown("#### Run a benchmark")
    picked = gr.Markdown(elem_id="lb-picked")
    with gr.Row():
        models = gr.Textbox(value="padim, patchcore", label="models (comma separated)", elem_id="bench-models")
        dataset = gr.Dropdown(DATASETS, value="mvtec3d", label="dataset kind", elem_id="bench-dataset")
        root = gr.Textbox(value=str(constants.SHARED_DATA / "mvtec_3d"), label="dataset root on the server",
                          elem_id="bench-root")
        categories = gr.Textbox(label="categories (comma separated; empty = all)", elem_id="bench-categories")
    with gr.Row():
        image_size = gr.Slider(64, 512, value=256, step=32, label="image size", elem_id="bench-size")
        max_train = gr.Number(value=0, precision=0, label="max train images (0 = all)")
        max_minutes = gr.Number(value=0, minimum=0, label="max training minutes per model (0 = no limit)")
        where = gr.Radio(where_choices(), value="local", label="run on", visible=len(where_choices()) > 1,
                         elem_id="bench-where")
        start = gr.Button("Run benchmark", variant="primary")
    table = gr.Dataframe(headers=["model", "category", "backbone", "image AUROC", "pixel AUROC", "PRO",
                                  "training s", "OpenVINO ms"], label="results of this run", interactive=False)
    with gr.Row():
        plot = gr.Image(label="image AUROC vs training time", interactive=False)
        comparison = gr.Textbox(label="compared with the study", lines=12,
                                placeholder="After a run: each of its numbers beside the study's.")
    report = gr.Markdown()

    gr.Markdown("#### Results browser")
    with gr.Row():
        files = gr.Dropdown(label="result file", choices=[], scale=4, elem_id="result-file")
        refresh = gr.Button("↻", scale=0, min_width=60)
    shown_table = gr.Dataframe(label="table", interactive=False, visible=False, elem_id="result-table")
    shown_text = gr.Textbox(lines=10, label="file")
    shown_image = gr.Image(label="plot", interactive=False)

    filters = [dataset_filter, metric_filter, model_filter, category_filter]
    views = [*filters, board, summary, runs, time_plot, category_plot, ours_plot]
    assert len(views) == LEADERBOARD_OUTPUTS
    # private events still take an API name (the function's by default): named here, so that the page's
    # opening event keeps the public name /leaderboard
    for component, name in zip(filters, ("dataset", "metric", "models", "categories")):
        component.input(leaderboard_on_filter, filters, views, api_name=f"leaderboard_by_{name}",
                        api_visibility="private", show_progress="minimal")
    export.click(export_leaderboard, filters, exported, api_name="leaderboard_export")
    form = [models, dataset, root, categories, image_size, picked]
    board.select(pick_cell, [board, dataset_filter], form, api_visibility="private")
    runs.select(pick_cell, [runs, dataset_filter], form, api_visibility="private")
    start.click(run_benchmark, [models, dataset, root, categories, image_size, max_train, max_minutes, where],
                [table, report, plot, comparison], api_name="benchmark", concurrency_limit=1, concurrency_id="train"
                ).then(leaderboard, filters, views, api_name="leaderboard_after_run", api_visibility="private",
                       show_progress="hidden")
    refresh.click(list_results, None, files, api_name="benchmark_results")
    files.change(show_result, files, [shown_table, shown_text, shown_image], api_name="benchmark_result")
    return {"filters": filters, "views": views, "files": files, "shown": [shown_table, shown_text, shown_image],
            "kfold": kfold}


def on_load(demo: gr.Blocks, parts: dict[str, Any]) -> None:
    """Fill the tab when a page opens: the leaderboard (``/leaderboard``) and the results browser's list."""
    demo.load(leaderboard, parts["filters"], parts["views"], api_name="leaderboard", show_progress="hidden")
    demo.load(kfold_comparison, None, parts["kfold"], api_visibility="private", show_progress="hidden")
    demo.load(list_results, None, parts["files"], api_visibility="private", show_progress="hidden").then(
        show_result, parts["files"], parts["shown"], api_visibility="private", show_progress="hidden")
