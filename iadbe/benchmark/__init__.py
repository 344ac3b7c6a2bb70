"""Benchmark engine: models x datasets x categories x seeds, each run in its own process, resumable.

    >>> from iadbe.benchmark import run_benchmark
    >>> result = run_benchmark(["padim", "patchcore"], "mvtec3d", "../shared/data/mvtec_3d")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP

Writes ``runs/<run_id>.json`` (one record per run), ``results.csv``, ``results.md``, ``results.tex`` and
PNG plots under the output folder; :mod:`iadbe.benchmark.study` holds the IADBE study's tables. The runs go
to an executor (:mod:`iadbe.benchmark.executors`): here, one after the other, or a Ray cluster
(``run_benchmark(..., executor=make_executor("ray", address=...))``), with the same records.
"""

from __future__ import annotations

from iadbe.benchmark.report import aggregate, markdown_table, write_outputs
from iadbe.benchmark.runner import RESULTS_DIR, BenchmarkResult, plan_runs, run_benchmark
from iadbe.benchmark.runs import RunSpec, load_records
from iadbe.benchmark.study import check_study_averages, compare_with_study, format_comparison

__all__ = [
    "RESULTS_DIR", "BenchmarkResult", "RunSpec", "aggregate", "check_study_averages", "compare_with_study",
    "format_comparison", "load_records", "markdown_table", "plan_runs", "run_benchmark", "write_outputs",
]
