"""Jobs as Ray tasks: ``iadbe benchmark --executor ray [--address ADDR]`` (and ``iadbe zoo``).

Ray is optional (``pip install ray``); it is imported when this executor is made, never by ``import iadbe``.

* **Resources.** Each :class:`~iadbe.benchmark.jobs.Job` becomes one task with ``num_cpus`` / ``num_gpus``
  from :func:`~iadbe.benchmark.jobs.job_resources` (the detector's entry, or ``--cpus-per-job`` /
  ``--gpus-per-job``). Ray gives a task with GPUs its ``CUDA_VISIBLE_DEVICES``, so training takes the CUDA
  path there, a task without any an empty one (:data:`ZERO_GPUS_HIDDEN`), and sets ``OMP_NUM_THREADS`` to
  its CPUs. A benchmark run starts its own child process, which inherits both; a zoo job trains inside the
  worker, so it gets a new worker each time (``max_calls=1``).
* **Failures.** Tasks are never retried (``max_retries=0``): a task whose worker dies (killed, out of
  memory, node lost) comes back as an error that the caller records as a failed run, as the local
  executor records a crashed child.
* **Code.** When this executor connects, the driver's ``iadbe`` package travels with the tasks (Ray's
  ``py_modules``), so every worker runs the driver's code; the other libraries (torch, anomalib, ...) must
  be installed on the workers. A process already connected (``ray.init`` called before) is used as it is,
  with the runtime environment it connected with.
* **Results** travel back as the tasks' return values and are written by the driver.

While the tasks run, a small actor (no CPU) hears which job started where, for the "running" count and the
machine of a job whose task died.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Sequence

from iadbe.benchmark.jobs import Job, Outcome, OutcomeHandler, Progress, ProgressEvent, call_job, job_resources
from iadbe.errors import SettingsError

#: Ray's setting that gives a task asking for no GPU an empty ``CUDA_VISIBLE_DEVICES`` (by default it sees
#: every GPU of its node): a CPU job on a GPU node then stays off the GPUs that other jobs asked for.
ZERO_GPUS_HIDDEN = "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"
#: A task still running this long after its job's own time limit (which its worker enforces) is stopped by
#: the driver: a worker that hangs, or a node cut off, does not hold the benchmark forever.
DRIVER_GRACE_S = 120.0
#: How often the driver looks for started and finished tasks (seconds).
POLL_S = 0.5
INSTALL_HINT = ("--executor ray needs Ray, which is an optional extra of IADBE: pip install ray "
                "(or pip install 'iadbe[ray]'), on this machine and on every node of the cluster")


def import_ray() -> Any:
    """``ray``, or a :class:`SettingsError` that says how to install it."""
    try:
        import ray
    except ImportError as err:
        missing = err
    else:
        return ray
    raise SettingsError(f"{INSTALL_HINT} ({missing})")


class _Board:
    """Actor: the jobs that started, and where (read and emptied by the driver)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any]]] = []

    def start(self, key: str, location: dict[str, Any]) -> None:
        self.started.append((key, location))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        taken, self.started = self.started, []
        return taken


def _task(call: str, kwargs: dict[str, Any], key: str, board: Any) -> dict[str, Any]:
    """On a worker: say where the job runs, run it, return its result and location."""
    import ray

    location = {"executor": "ray", "hostname": socket.gethostname(),
                "node_ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id()}
    ray.get(board.start.remote(key, location))  # heard before the job runs: a worker killed now still has a place
    return {"result": call_job(call, kwargs), "location": location}


class RayExecutor:
    """Runs jobs as Ray tasks on the cluster at ``address`` (None: a local cluster for this run, or the
    cluster this process is already connected to)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_job: float | None = None,
                 gpus_per_job: float | None = None, ship_code: bool = True) -> None:
        self.ray = import_ray()
        self.address = address or None
        self.cpus_per_job, self.gpus_per_job = cpus_per_job, gpus_per_job
        self.ship_code = ship_code

    def _connect(self) -> bool:
        """Connect (True: this call did, and disconnects at the end)."""
        if self.ray.is_initialized():
            return False
        try:
            self.ray.init(address=self.address, logging_level="WARNING", log_to_driver=False,
                          runtime_env=self.runtime_env())
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = self.address or "a new local cluster"
            raise SettingsError(f"could not connect to the Ray cluster at {where}: {err}. Start one with "
                                "`ray start --head` (its address is printed) or leave --address out") from None
        return True

    def runtime_env(self) -> dict[str, Any] | None:
        """The driver's ``iadbe`` package for the workers (Ray uploads it once per connection; a process that
        is already connected keeps the runtime environment it connected with)."""
        if not self.ship_code:
            return None
        from iadbe import constants

        return {"py_modules": [str(constants.PACKAGE_DIR)], "excludes": ["__pycache__", "*.pyc"],
                "env_vars": {ZERO_GPUS_HIDDEN: "1"}}

    def resources_for(self, job: Job) -> Any:
        """The job's resources on the connected cluster: no GPU by default where it has none, and no more
        CPUs by default than its largest node has."""
        ray = self.ray
        cluster_gpus = ray.cluster_resources().get("GPU", 0) > 0
        wanted = job_resources(job.model, cpus=self.cpus_per_job, gpus=self.gpus_per_job,
                               cluster_gpus=cluster_gpus) if job.model else job.resources
        if self.cpus_per_job is None:
            largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=0)
            if 0 < largest < wanted.cpus:
                from dataclasses import replace

                wanted = replace(wanted, cpus=float(largest))
        return wanted

    def run(self, jobs: Sequence[Job], handle: OutcomeHandler, progress: Progress,
            report: ProgressEvent) -> None:
        ray = self.ray
        owned = self._connect()
        board = None
        pending: dict[Any, Job] = {}
        try:
            board = ray.remote(num_cpus=0)(_Board).remote()
            reused, fresh = ray.remote(_task), ray.remote(max_calls=1)(_task)
            for job in jobs:
                needs = self.resources_for(job)
                options = {"num_cpus": needs.cpus, "num_gpus": needs.gpus, "max_retries": 0, "name": job.key}
                remote = fresh if job.fresh_worker else reused
                pending[remote.options(**options).remote(job.call, job.kwargs, job.key, board)] = job
            report(progress, f"submitted {len(jobs)} jobs to Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
                             f"{ray.cluster_resources().get('GPU', 0):g} GPUs in the cluster)")
            where: dict[str, dict[str, Any]] = {}
            deadlines: dict[str, float] = {}
            stopped: dict[str, str] = {}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for key, location in ray.get(board.take.remote()):
                    where[key] = location
                    if key not in progress.running:
                        progress.start(key)
                        report(progress, f"{key}: started on {location.get('hostname')}")
                self._stop_overdue(pending, where, deadlines, stopped)
                for ref in ready:
                    job = pending.pop(ref)
                    outcome = self._outcome(job, ref, where.get(job.key, {"executor": "ray"}))
                    if job.key in stopped:  # whatever came back is the fallout of the stop
                        outcome = Outcome(job, None, stopped[job.key], outcome.location)
                    progress.start(job.key)  # a job too short to be seen starting still counts once
                    ok = handle(outcome)
                    progress.finish(job.key, ok)
                    report(progress, f"{job.key}: {'done' if ok else 'FAILED'}"
                                     + (f" ({outcome.error.splitlines()[0][:200]})" if outcome.error else ""))
        except BaseException:
            for ref in pending:  # Ctrl-C or an error here: stop the runs, record nothing for them
                ray.cancel(ref, force=True)
            raise
        finally:
            if board is not None:
                ray.kill(board)
            if owned:
                ray.shutdown()

    def _stop_overdue(self, pending: dict[Any, Job], where: dict[str, Any], deadlines: dict[str, float],
                      stopped: dict[str, str]) -> None:
        """Cancel the tasks that run past their job's limit plus :data:`DRIVER_GRACE_S` (counted from when
        they started, not from when they were queued)."""
        now = time.monotonic()
        for ref, job in pending.items():
            if job.timeout_s is None or job.key not in where or job.key in stopped:
                continue
            deadline = deadlines.setdefault(job.key, now + job.timeout_s + DRIVER_GRACE_S)
            if now > deadline:
                stopped[job.key] = (f"stopped by the driver: no result {job.timeout_s + DRIVER_GRACE_S:.0f} s after "
                                    "it started (its worker hung or its node was cut off)")
                self.ray.cancel(ref, force=True)

    def _outcome(self, job: Job, ref: Any, location: dict[str, Any]) -> Outcome:
        ray = self.ray
        try:
            value = ray.get(ref)
        except ray.exceptions.RayError as err:
            return Outcome(job, None, _task_error(err, ray), location)
        return Outcome(job, value["result"], location=value["location"])


def _task_error(err: Exception, ray: Any) -> str:
    """A short reason for a task that did not return: killed, out of memory, node lost, or its exception."""
    exceptions = ray.exceptions
    if isinstance(err, exceptions.OutOfMemoryError):
        return "the Ray task was killed: out of memory on its node"
    if isinstance(err, exceptions.WorkerCrashedError):
        return "the Ray worker running it died (killed, or out of memory)"
    if isinstance(err, (exceptions.NodeDiedError, exceptions.LocalRayletDiedError)):
        return "the Ray node running it died"
    if isinstance(err, exceptions.TaskCancelledError):
        return "the Ray task was cancelled"
    if isinstance(err, exceptions.RayTaskError):
        cause = err.cause if getattr(err, "cause", None) is not None else err
        return f"{type(cause).__name__}: {cause}"
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"

