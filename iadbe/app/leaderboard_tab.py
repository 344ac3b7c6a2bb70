"""The Benchmark tab's leaderboard: which benchmark folders a visitor may read, the filters turned into
:mod:`iadbe.benchmark.leaderboard` calls and its frames into the table, the summary, the runs table and the
plots (:mod:`iadbe.app.benchmark_tab` lays them out); the repeat of a dropdown pick that Gradio sends is
skipped.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from iadbe import constants
from iadbe.app.common import request_dir, user_errors, visitor_workspace

#: Rows of the table drawn as per-category bars (the plot is read, not scrolled).
BAR_ROWS = 4


def result_roots(workspace: Any = None) -> dict[str, Path]:
    """The benchmark folders a visitor may read, by label (and nothing outside them): the runs shipped with
    the project, the server's results folder and, in shared mode, the visitor's own."""
    from iadbe.benchmark import RESULTS_DIR

    roots = {"docs/benchmark": constants.PROJECT_DIR / "docs" / "benchmark", "results": Path(RESULTS_DIR)}
    if workspace is not None and workspace.private:
        roots["your runs"] = own_results(workspace)
    return {label: root for label, root in roots.items() if root.is_dir()}


def own_results(workspace: Any) -> Path:
    """Where the runs started here are written: the visitor's workspace in shared mode, else the server's
    results folder (as ``iadbe benchmark`` writes)."""
    from iadbe.benchmark import RESULTS_DIR

    return workspace.root / "benchmark" if workspace is not None and workspace.private else Path(RESULTS_DIR)


def _board(request: Any, profile: Any) -> Any:
    from iadbe.benchmark.leaderboard import load_leaderboard

    return load_leaderboard(result_roots(visitor_workspace(request, profile)))


def _choose(board: Any, dataset: Any, metric: Any, models: Any, categories: Any) -> tuple:
    """The filters made consistent with what the board has (a dataset without the metric gets its first)."""
    datasets = board.datasets()
    dataset = dataset if dataset in datasets else datasets[0]
    metrics = board.metrics(dataset)
    metric = metric if metric in metrics else metrics[0]
    model_choices, category_choices = board.models(dataset, metric), board.categories(dataset, metric)
    models = [m for m in (models or []) if m in model_choices]
    categories = [c for c in (categories or []) if c in category_choices]
    return datasets, dataset, metrics, metric, model_choices, models, category_choices, categories


def _summary(view: Any, runs: Any) -> str:
    from iadbe.benchmark.leaderboard import TITLES

    study = int(view.is_study().sum())
    parts = [f"**{TITLES.get(view.metric, view.metric)}, {view.dataset}**: {study} study rows, "
             f"{len(view.table) - study} IADBE rows, {len(view.categories)} categories."]
    if view.metric.endswith("pixel_AUPRO"):
        parts.append("The study's PRO is on another scale than IADBE's (e.g. 12.31 for PaDiM on tire beside a pixel "
                     "AUROC of 95.22): compare rankings, not numbers.")
    flagged = view.flagged()
    if flagged:
        parts.append("The study's printed averages that its own rows do not give: " + "; ".join(flagged) + ".")
    parts.append(f"IADBE runs below: {len(runs)} (every dataset; the model and category filters apply).")
    return " ".join(parts)


#: What ``/leaderboard`` returns: the four filters, the table, its summary, the runs table and three plots.
LEADERBOARD_OUTPUTS = 10


@user_errors
def leaderboard(dataset: Any, metric: Any, models: Any, categories: Any, request: gr.Request = None,
                profile: gr.OAuthProfile | None = None) -> tuple:
    """``/leaderboard``: the filters' choices, the leaderboard, its summary, the runs table and three plots."""
    from iadbe.benchmark.leaderboard_view import TITLES, best_in_columns, table_cells

    board = _board(request, profile)
    datasets, dataset, metrics, metric, model_choices, models, category_choices, categories = _choose(
        board, dataset, metric, models, categories)
    view = board.view(dataset, metric, models, categories)
    runs = board.runs(models, categories)
    low = 0.0 if metric.endswith("F1") else 50.0
    run_values = ["image AUROC", "study image AUROC", "pixel AUROC", "PRO", "F1 calibrated", "F1 oracle"]
    return (gr.update(choices=datasets, value=dataset),
            gr.update(choices=[(TITLES.get(m, m), m) for m in metrics], value=metric),
            gr.update(choices=model_choices, value=models), gr.update(choices=category_choices, value=categories),
            table_cells(view.table, view.value_columns, view.best(), low=low),
            _summary(view, runs),
            table_cells(runs, run_values, best_in_columns(runs, run_values)),
            board.auroc_vs_time(dataset), view.per_category(BAR_ROWS), board.ours_against_study(dataset, metric, models))


class RepeatedFilters:
    """Which filter events repeat the one before them from the same page within ``window_s`` seconds.

    Gradio 6's single-choice Dropdown fires ``input`` twice for one picked option (two events, ~15 ms
    apart), so the leaderboard was computed, sent and drawn twice for every dataset or metric a visitor
    picked (issue 21: the browser's redraw is most of the wait; ``tests/test_browser.py`` checks that a pick
    computes the table once). Keeps the last filters of at most ``capacity`` pages.
    """

    def __init__(self, window_s: float = 2.0, capacity: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.capacity, self._clock = window_s, capacity, clock
        self._last: OrderedDict[str, tuple[tuple, float]] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, page: str | None, filters: tuple) -> bool:
        """True when ``page`` asked for the same ``filters`` less than ``window_s`` ago; records this ask."""
        if not page:
            return False
        now = self._clock()
        with self._lock:
            last = self._last.pop(page, None)
            self._last[page] = (filters, now)
            while len(self._last) > self.capacity:
                self._last.popitem(last=False)
        return last is not None and last[0] == filters and now - last[1] < self.window_s


_REPEATS = RepeatedFilters()


def leaderboard_on_filter(dataset: Any, metric: Any, models: Any, categories: Any, request: gr.Request = None,
                          profile: gr.OAuthProfile | None = None) -> tuple:
    """A filter's ``input`` event: :func:`leaderboard`, except that the repeat Gradio sends for the same pick
    changes nothing on the page (every output skipped), so the browser draws the new leaderboard once."""
    filters = (dataset, metric, tuple(models or ()), tuple(categories or ()))
    if _REPEATS.seen(getattr(request, "session_hash", None), filters):
        return (gr.skip(),) * LEADERBOARD_OUTPUTS
    return leaderboard(dataset, metric, models, categories, request, profile)


@user_errors
def export_leaderboard(dataset: Any, metric: Any, models: Any, categories: Any, request: gr.Request = None,
                       profile: gr.OAuthProfile | None = None) -> list[str]:
    """``/leaderboard_export``: the filtered table as CSV, Markdown and LaTeX files."""
    board = _board(request, profile)
    _, dataset, _, metric, _, models, _, categories = _choose(board, dataset, metric, models, categories)
    files = board.view(dataset, metric, models, categories).write(request_dir("leaderboard"),
                                                                  stem=f"leaderboard_{dataset}_{metric}")
    return [str(files[kind]) for kind in ("csv", "md", "tex")]
