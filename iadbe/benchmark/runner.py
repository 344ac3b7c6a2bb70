"""Run models x categories x seeds, each in its own process; resumable; then tables and plots.

A crash, a kill or an out-of-memory in one run becomes a ``failed`` record (exit code, the end of its
output) and the others continue. Running the same benchmark again skips every run with an ``ok``
record, so a benchmark stopped midway only runs what is missing.

The runs go to an executor (:mod:`iadbe.benchmark.executors`): one after the other here (``local``), or as
tasks of a Ray cluster (``ray``). Either way a run is :func:`run_job` (a child process on the machine that
runs it), and its record comes back to this process, which writes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from iadbe import constants
from iadbe.benchmark.runs import MODES, RunSpec, finished_ids, load_records, record_path, write_record
from iadbe.errors import SettingsError

if TYPE_CHECKING:
    from iadbe.benchmark.executors import Executor

#: Default output folder of the benchmark (also browsed by the app's Benchmark tab).
RESULTS_DIR = constants.IADBE_HOME / "benchmark"
#: A run that takes longer than this is stopped and recorded as failed.
DEFAULT_RUN_TIMEOUT_S = 6 * 3600
BenchmarkProgress = Callable[[float, str], None]


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` did and wrote."""

    out: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{len(self.ran)} run, {len(self.skipped)} skipped (already done), {len(self.failed)} failed; "
                f"results in {self.out}")


def plan_runs(models: Sequence[str], dataset: str, root: str | Path, categories: Sequence[str] | None = None, *,
              seeds: Sequence[int] = (0,), mode: str = "per_category", folds: int = 3,
              **settings: Any) -> list[RunSpec]:
    """Every RunSpec of a benchmark, in order (model-major; ``kfold``: fold-major, so that every model has
    its first fold before any has its second). ``categories`` None: all found under ``root``."""
    from iadbe.data import list_categories
    from iadbe.models import get_spec

    if mode not in MODES:
        raise SettingsError(f"unknown benchmark mode {mode!r}; use one of {', '.join(MODES)}")
    names = [get_spec(model).name for model in models]
    if not names:
        raise SettingsError("name at least one model")
    found = list(categories) if categories else list_categories(dataset, root)
    if not seeds:
        raise SettingsError("name at least one seed")
    root = str(root)
    if mode == "unified":
        return [RunSpec(model, dataset, root, "all", seed, mode=mode, test_categories=tuple(found), **settings)
                for model in names for seed in seeds]
    if mode == "kfold":
        from iadbe.benchmark.kfold import check_folds

        check_folds(folds)
        return [RunSpec(model, dataset, root, category, seed, mode=mode, fold=fold, folds=folds, **settings)
                for category in found for seed in seeds for fold in range(folds) for model in names]
    tests = tuple(found) if mode == "one_to_all" else ()
    return [RunSpec(model, dataset, root, category, seed, mode=mode, test_categories=tests, **settings)
            for model in names for category in found for seed in seeds]


def run_benchmark(
    models: Sequence[str],
    dataset: str,
    root: str | Path,
    categories: Sequence[str] | None = None,
    *,
    seeds: Sequence[int] = (0,),
    backbone: str | None = None,
    image_size: int = 256,
    max_epochs: int | None = None,
    max_train_images: int | None = None,
    max_train_minutes: float | None = None,
    mode: str = "per_category",
    folds: int = 3,
    timing_images: int = 8,
    out: str | Path | None = None,
    timeout_s: float = DEFAULT_RUN_TIMEOUT_S,
    progress: BenchmarkProgress | None = None,
    make_outputs: bool = True,
    executor: Executor | None = None,
) -> BenchmarkResult:
    """Run (or resume) a benchmark and write its records, tables and plots under ``out``.

    Args:
        models: registry names, e.g. ``["padim", "patchcore"]``.
        categories: categories to run (default: every category found under ``root``).
        seeds: one run per seed; tables show mean and spread over seeds.
        mode: ``per_category``, ``one_to_all`` (the study's unified table), ``unified`` (one model, all
            categories together) or ``kfold`` (``folds`` folds over the labelled images: supervised and anomaly
            detectors compared fairly, :mod:`iadbe.benchmark.kfold`); see :class:`~iadbe.benchmark.runs.RunSpec`.
        out: output folder (default ``RESULTS_DIR/<dataset>``); records go to ``out/runs``.
        executor: where the runs go (:func:`iadbe.benchmark.executors.make_executor`: ``local``, the
            default, or a Ray cluster); the records, tables and plots are the same.
        progress: ``(fraction, message)`` after every change; the message starts with the counts
            (:meth:`~iadbe.benchmark.executors.Progress.line`).
    """
    report = progress or (lambda fraction, message: None)
    out = Path(out) if out else RESULTS_DIR / dataset
    specs = plan_runs(models, dataset, root, categories, seeds=seeds, mode=mode, folds=folds, backbone=backbone,
                      image_size=image_size, max_epochs=max_epochs, max_train_images=max_train_images,
                      max_train_minutes=max_train_minutes, timing_images=timing_images)
    result = run_specs(specs, out, timeout_s=timeout_s, executor=executor, progress=report)
    result.records = load_records(out)
    if make_outputs:
        report(0.98, "writing tables and plots")
        from iadbe.benchmark.report import write_outputs

        result.files = write_outputs(out, result.records, dataset)
    report(1.0, result.summary())
    return result


def run_specs(specs: Sequence[RunSpec], out: str | Path, *, timeout_s: float = DEFAULT_RUN_TIMEOUT_S,
              executor: Executor | None = None, progress: BenchmarkProgress | None = None) -> BenchmarkResult:
    """Run every spec without an ``ok`` record under ``out`` (resume) on ``executor``; each run's record
    (``ok``, or ``failed`` with its reason) is written here, by this process, as it comes back."""
    from iadbe.benchmark.executors import LocalExecutor
    from iadbe.benchmark.jobs import Job, Outcome, Progress

    report = progress or (lambda fraction, message: None)
    executor = executor or LocalExecutor()
    out = Path(out)
    result = BenchmarkResult(out)
    done = finished_ids(out)
    result.skipped = [spec.run_id for spec in specs if spec.run_id in done]
    todo = {spec.run_id: spec for spec in specs if spec.run_id not in done}
    jobs = [Job(run_id, f"{__name__}:run_job", {"spec": spec.to_dict(), "timeout_s": timeout_s}, model=spec.model,
                timeout_s=timeout_s) for run_id, spec in todo.items()]

    def handle(outcome: Outcome) -> bool:
        spec = todo[outcome.job.key]
        record = outcome.result if outcome.result is not None else failed_record(spec, None, outcome.error or "", "")
        record["machine"] = {**outcome.location, **(record.get("machine") or {})}
        write_record(record_path(out, spec), record)
        ok = record.get("status") == "ok"
        (result.ran if ok else result.failed).append(spec.run_id)
        if not ok:
            report(counts.fraction, f"{spec.run_id} failed: {record.get('reason')}")
        return ok

    counts = Progress(total=len(specs), skipped=len(result.skipped), executor=executor.name)
    executor.run(jobs, handle, counts, lambda state, event: report(state.fraction, f"{state.line()}: {event}"))
    return result


def run_job(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One benchmark job wherever it runs (this machine or a cluster's worker): the run in a child process,
    its record kept in a temporary folder of that machine and returned (``ok`` or ``failed``)."""
    run = RunSpec.from_dict(spec)
    with tempfile.TemporaryDirectory(prefix=f"iadbe-job-{run.run_id}-") as tmp:
        return run_in_process(run, Path(tmp), timeout_s)


def failed_record(spec: RunSpec, code: int | None, reason: str, tail: str,
                  wall_time_s: float | None = None) -> dict[str, Any]:
    """The record of a run that gave no result: its exit code (None: its task died), why, its output's end."""
    return {"run_id": spec.run_id, "status": "failed", "spec": spec.to_dict(), "model": spec.model,
            "dataset": spec.dataset, "category": spec.category, "seed": spec.seed, "mode": spec.mode,
            "exit_code": code, "reason": reason, "wall_time_s": wall_time_s, "log_tail": tail}


def run_in_process(spec: RunSpec, out: Path, timeout_s: float = DEFAULT_RUN_TIMEOUT_S) -> dict[str, Any]:
    """Run ``spec`` in a child process; return its record, or write and return a ``failed`` one."""
    target = record_path(out, spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iadbe-bench-") as tmp:
        spec_file, log_file = Path(tmp) / "spec.json", Path(tmp) / "run.log"
        spec_file.write_text(json.dumps(spec.to_dict()), encoding="utf-8")
        started = time.perf_counter()
        with log_file.open("wb") as log:
            child = subprocess.Popen([sys.executable, "-m", "iadbe.benchmark.worker", str(spec_file), str(target)],
                                     stdout=log, stderr=subprocess.STDOUT, env=constants.child_process_env(), **_spawn_options())
            try:
                code = child.wait(timeout=timeout_s)
                reason = None
            except subprocess.TimeoutExpired:
                _kill_run(child)
                code, reason = child.wait(), f"stopped after the {timeout_s:.0f} s limit"
            except BaseException:  # Ctrl-C / kill of the parent: take the child down with it, record nothing
                _kill_run(child)
                child.wait()
                raise
        if code == 0 and target.is_file():
            return json.loads(target.read_text(encoding="utf-8"))
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-3000:]
    record = failed_record(spec, code, reason or _failure_reason(code, tail), tail,
                           round(time.perf_counter() - started, 3))
    write_record(target, record)
    return record


def _process_groups() -> bool:
    """Whether runs get their own POSIX session, killed as a group (Linux, macOS); elsewhere (Windows) the run
    is one spawned process, killed with its children by ``taskkill /T`` where that exists."""
    return os.name == "posix" and hasattr(os, "killpg")


def _spawn_options() -> dict[str, Any]:
    if _process_groups():
        return {"start_new_session": True, "preexec_fn": _die_with_parent}
    flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)  # Windows: Ctrl-C in the console spares the run
    return {"creationflags": flags} if flags else {}


def _kill_run(child: subprocess.Popen) -> None:
    """Stop a run and whatever it started."""
    if _process_groups():
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(child.pid)], capture_output=True, check=False)
    if child.poll() is None:
        child.kill()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the benchmark process dies (even by SIGKILL), so a
    killed benchmark leaves no orphan run behind (Linux; elsewhere the child just finishes its run)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not glibc Linux (macOS, musl): the run just finishes
        pass




def _failure_reason(code: int, tail: str) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (out of memory?)" if -code == getattr(signal, "SIGKILL", None) else ""
        return f"killed by {name}{hint}"
    lines = [line for line in tail.strip().splitlines() if line.strip()]
    return f"exit code {code}: {lines[-1] if lines else 'no output'}"
