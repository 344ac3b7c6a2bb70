"""Where the jobs of a benchmark or a model zoo run: here, one after the other (``local``, the default), or
as tasks on a Ray cluster (``ray``, :mod:`iadbe.benchmark.ray_executor`).

A :class:`Job` names a function (``"module:function"``, imported where it runs) and its keyword arguments,
both plain data, plus the CPUs and GPU share it asks for. An executor runs each job and hands its result
(a dict) back to the caller on this machine, which writes it: the workers need no filesystem shared with
the driver. A job whose task dies (a crash of its process, an out-of-memory kill, a lost node) comes back
as an :class:`Outcome` with an ``error`` and the rest go on. Each outcome says where the job ran
(``location``: the executor, host name, and the Ray node), which the callers record as the run's machine.

:class:`Progress` counts what is done, running and failed while the jobs run; both executors report it the
same way, so the terminal and the app's Benchmark tab show one kind of line.

    >>> executor = make_executor("local")
    >>> executor.name
    'local'
"""

from __future__ import annotations

from typing import Protocol, Sequence

from iadbe.benchmark.jobs import Job, Outcome, OutcomeHandler, Progress, ProgressEvent, call_job, local_location
from iadbe.errors import SettingsError

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs jobs and hands each :class:`Outcome` to ``handle`` (on this machine, in this thread), which
    returns whether the job succeeded; ``report`` gets the progress after every change."""

    name: str

    def run(self, jobs: Sequence[Job], handle: OutcomeHandler, progress: Progress,
            report: ProgressEvent) -> None: ...


class LocalExecutor:
    """Today's behaviour: each job in turn, in this process (a benchmark job starts its own child process)."""

    name = "local"

    def run(self, jobs: Sequence[Job], handle: OutcomeHandler, progress: Progress,
            report: ProgressEvent) -> None:
        location = local_location()
        for job in jobs:
            progress.start(job.key)
            report(progress, f"{job.key}: started")
            try:
                outcome = Outcome(job, call_job(job.call, job.kwargs), location=location)
            except Exception as err:  # noqa: BLE001 - as a Ray task's error: recorded, the others go on
                outcome = Outcome(job, None, f"{type(err).__name__}: {err}", location)
            ok = handle(outcome)
            progress.finish(job.key, ok)
            report(progress, f"{job.key}: {'done' if ok else 'FAILED'}")


def make_executor(name: str = "local", *, address: str | None = None, cpus_per_job: float | None = None,
                  gpus_per_job: float | None = None) -> Executor:
    """``local`` or ``ray`` (``address``: an existing cluster, ``ray://HOST:10001`` or ``HOST:6379``; none: a
    Ray cluster on this machine, started for the run and stopped after it).

    Raises:
        SettingsError: an unknown executor; ``ray`` without Ray installed (says how to add it); options
            that only the Ray executor takes given to the local one.
    """
    if name == "local":
        if address or cpus_per_job is not None or gpus_per_job is not None:
            raise SettingsError("--address, --cpus-per-job and --gpus-per-job are for --executor ray")
        return LocalExecutor()
    if name == "ray":
        from iadbe.benchmark.ray_executor import RayExecutor

        return RayExecutor(address=address, cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job)
    raise SettingsError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
