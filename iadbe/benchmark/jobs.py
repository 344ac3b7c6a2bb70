"""What an executor (:mod:`iadbe.benchmark.executors`) runs and reports: a :class:`Job` names a function
(``"module:function"``, imported where it runs) and its keyword arguments, both plain data, plus the
:class:`Resources` it asks a cluster for; an :class:`Outcome` is its result or why its task died, and where it
ran; :class:`Progress` counts what is done, running and failed, the same way for every executor.
"""

from __future__ import annotations

import importlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from iadbe.errors import SettingsError

#: GPU share a detector's job asks for on a cluster with GPUs when its registry entry does not say:
#: a whole GPU for detectors trained by gradient descent, a quarter for one-pass fits (memory banks,
#: Gaussians) whose GPU use is short.
TRAINED_GPU_SHARE, ONE_PASS_GPU_SHARE = 1.0, 0.25


@dataclass(frozen=True)
class Resources:
    """What one job asks a cluster for: CPUs and a GPU share (0 = none, 0.25 = a quarter of one GPU)."""

    cpus: float = 1.0
    gpus: float = 0.0

    def describe(self) -> str:
        return f"{self.cpus:g} CPU" + (f" + {self.gpus:g} GPU" if self.gpus else "")


@dataclass(frozen=True)
class Job:
    """One unit of work: ``call`` (``"module:function"``) with ``kwargs`` (plain, picklable data)."""

    key: str
    call: str
    kwargs: dict[str, Any]
    resources: Resources = Resources()
    #: Detector name, for the default resources of a cluster (:func:`job_resources`).
    model: str = ""
    #: True: the job runs inside the worker (the zoo's training), so a cluster gives it a new worker process
    #: each time (its GPUs and memory are its own); False: the job starts its own child process (a benchmark run).
    fresh_worker: bool = False
    #: Seconds the job may run once started (it stops itself then; a cluster's driver also stops a task that
    #: has not returned :data:`~iadbe.benchmark.ray_executor.DRIVER_GRACE_S` later). None: no limit.
    timeout_s: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What came back for a job: its result, or why its task died (``error``), and where it ran."""

    job: Job
    result: dict[str, Any] | None
    error: str | None = None
    location: dict[str, Any] = field(default_factory=dict)


@dataclass
class Progress:
    """Live counts of a run of jobs; :meth:`line` is what the terminal and the app show."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    running: set[str] = field(default_factory=set)
    executor: str = "local"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def waiting(self) -> int:
        return self.total - self.skipped - self.done - self.failed - len(self.running)

    @property
    def fraction(self) -> float:
        todo = self.total - self.skipped
        return 1.0 if todo <= 0 else (self.done + self.failed) / todo

    def start(self, key: str) -> None:
        with self._lock:
            self.running.add(key)

    def finish(self, key: str, ok: bool) -> None:
        with self._lock:
            self.running.discard(key)
            if ok:
                self.done += 1
            else:
                self.failed += 1

    def line(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return (f"[{self.executor}] {self.done} done, {len(self.running)} running, {self.failed} failed, "
                f"{self.waiting} waiting of {self.total}{skipped}")


ProgressEvent = Callable[[Progress, str], None]
OutcomeHandler = Callable[[Outcome], bool]


def call_job(call: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Import ``call`` (``"module:function"``) and run it with ``kwargs``: the same on every executor."""
    module_name, _, function = call.partition(":")
    return getattr(importlib.import_module(module_name), function)(**kwargs)


def local_location() -> dict[str, Any]:
    return {"executor": "local", "hostname": socket.gethostname()}


def job_resources(model: str, *, cpus: float | None = None, gpus: float | None = None,
                  cluster_gpus: bool = True) -> Resources:
    """The resources one job of ``model`` asks for: its registry entry's (``job_cpus``, ``job_gpus``),
    else 2 CPUs and :data:`TRAINED_GPU_SHARE` / :data:`ONE_PASS_GPU_SHARE`; no GPU where the cluster has
    none. ``cpus`` / ``gpus`` given: those, whatever the cluster has (``--cpus-per-job``, ``--gpus-per-job``)."""
    from iadbe.models import get_spec

    spec = get_spec(model)
    share = spec.job_gpus if spec.job_gpus is not None else (
        TRAINED_GPU_SHARE if spec.max_epochs > 1 else ONE_PASS_GPU_SHARE)
    chosen_cpus = spec.job_cpus if cpus is None else cpus
    chosen_gpus = (share if cluster_gpus else 0.0) if gpus is None else gpus
    if chosen_cpus <= 0 or chosen_gpus < 0:
        raise SettingsError(f"a job needs more than 0 CPUs and at least 0 GPUs, got {chosen_cpus} and {chosen_gpus}")
    if chosen_gpus > 1 and chosen_gpus != int(chosen_gpus):
        raise SettingsError(f"a GPU share above 1 must be whole (Ray's rule), got {chosen_gpus}")
    return Resources(float(chosen_cpus), float(chosen_gpus))
