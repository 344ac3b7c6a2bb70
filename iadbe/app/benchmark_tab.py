"""Benchmark tab: a run form and a results browser over ``iadbe.benchmark`` when it is installed.

``iadbe.benchmark`` is imported inside the handlers only (it is optional and heavy). Without it the tab
shows the study's reference note; the ``/benchmark`` endpoint then answers with that note as an error.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

import gradio as gr

from iadbe import constants
from iadbe.app.common import fail, user_errors

STUDY_NOTE = """\
### The IADBE study (reference)

The IADBE study benchmarked anomalib 1.x detectors (the Models tab lists them) with the study's
backbones (ResNet-18, Wide-ResNet-50) and selected checkpoints and thresholds **on the test set**, so
its numbers are upper bounds. IADBE's own runs fit thresholds on validation data only and score the
whole test set. For example, on MVTec 3D-AD *tire* the study reports image / pixel AUROC of
PaDiM 80.97 / 95.22 and PatchCore 79.95 / 99.20; `docs/NOTES.md` has what was measured on this machine.
"""
RESULT_SUFFIXES = {".csv", ".json", ".md", ".txt", ".png", ".jpg", ".svg"}


def available() -> bool:
    """Whether ``iadbe.benchmark`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("iadbe.benchmark") is not None
    except (ImportError, ValueError):
        return False


def _module() -> Any:
    if not available():
        raise fail("iadbe.benchmark is not part of this build yet: only the study's reference note is shown.",
                       title="Not available")
    return importlib.import_module("iadbe.benchmark")


def result_roots() -> list[Path]:
    """Folders the results browser may read (and nothing outside them)."""
    roots = [constants.PROJECT_DIR / "results", constants.IADBE_HOME / "benchmark"]
    try:
        extra = getattr(importlib.import_module("iadbe.benchmark"), "RESULTS_DIR", None) if available() else None
    except Exception:  # noqa: BLE001 - a broken optional module must not break the browser
        extra = None
    if extra:
        roots.append(Path(extra))
    return [root for root in roots if root.is_dir()]


def _call(fn: Any, values: dict[str, Any]) -> Any:
    """Call ``fn`` with the form values its signature accepts."""
    parameters = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return fn(**values)
    return fn(**{key: value for key, value in values.items() if key in parameters})


def _rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows) of whatever the benchmark returned (objects with rows, data frames, dicts)."""
    for attr in ("to_rows", "rows"):
        value = getattr(result, attr, None)
        result = value() if callable(value) else (value if value is not None else result)
    if hasattr(result, "to_dict") and hasattr(result, "columns"):  # a pandas DataFrame
        return [str(c) for c in result.columns], result.values.tolist()
    if isinstance(result, dict):
        result = [result]
    if isinstance(result, (list, tuple)) and result and all(isinstance(r, dict) for r in result):
        headers = list(dict.fromkeys(key for row in result for key in row))
        return headers, [[row.get(h) for h in headers] for row in result]
    return ["result"], [[str(result)]]


@user_errors
def run_benchmark(models: Any, dataset: Any, root: Any, category: Any, image_size: Any,
                  max_train_images: Any, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
    """``/benchmark``: run models x one dataset through ``iadbe.benchmark``; returns (table, text)."""
    module = _module()
    fn = getattr(module, "run_benchmark", None) or getattr(module, "run", None)
    if not callable(fn):
        raise fail("iadbe.benchmark has no run_benchmark() function; use its command line.")
    names = [m.strip() for m in str(models or "").replace(";", ",").split(",") if m.strip()]
    values = {"models": names, "dataset": str(dataset or "folder"), "root": str(root or "").strip(),
              "category": str(category or "").strip() or None, "image_size": int(image_size or 256),
              "max_train_images": int(max_train_images or 0) or None,
              "progress": lambda fraction, message: progress(fraction, desc=message)}
    result = _call(fn, values)
    headers, rows = _rows(result)
    table = getattr(result, "table", None)
    text = table() if callable(table) else (str(table) if table else "")
    return gr.update(value=rows, headers=headers), text


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
        return gr.update(value=lines[1:], headers=lines[0]), "", None
    return gr.update(value=[]), file.read_text(encoding="utf-8", errors="replace")[:100_000], None


def build() -> None:
    """The Benchmark tab's components (inside an open ``gr.Tab``)."""
    gr.Markdown(STUDY_NOTE)
    with gr.Column(visible=available()):
        with gr.Row():
            models = gr.Textbox(value="padim, patchcore", label="models (comma separated)")
            dataset = gr.Dropdown(["folder", "mvtec", "mvtec3d", "btech", "kolektor", "visa"], value="folder",
                                  label="dataset kind")
            root = gr.Textbox(label="dataset root on the server")
            category = gr.Textbox(label="category")
        with gr.Row():
            image_size = gr.Slider(64, 512, value=256, step=32, label="image size")
            max_train = gr.Number(value=0, precision=0, label="max train images (0 = all)")
            start = gr.Button("Run benchmark", variant="primary")
        table = gr.Dataframe(label="results", interactive=False)
        text = gr.Textbox(label="summary", lines=8)
        start.click(run_benchmark, [models, dataset, root, category, image_size, max_train], [table, text],
                    api_name="benchmark", concurrency_limit=1, concurrency_id="train")
        gr.Markdown("#### Results browser")
        with gr.Row():
            files = gr.Dropdown(label="result file", choices=[], scale=4)
            refresh = gr.Button("↻", scale=0, min_width=60)
        shown_table = gr.Dataframe(label="table", interactive=False)
        shown_text = gr.Textbox(lines=10, label="file")
        shown_image = gr.Image(label="plot", interactive=False)
        refresh.click(list_results, None, files, api_name="benchmark_results")
        files.change(show_result, files, [shown_table, shown_text, shown_image], api_name="benchmark_result")
