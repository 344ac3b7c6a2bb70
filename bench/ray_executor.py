"""What the Ray executor costs per job against the local executor, side by side on this machine.

    python bench/ray_executor.py [--trivial 40] [--runs 3] [--repeats 2]

Starts a Ray cluster on this machine (2 CPUs, no dashboard; its start is timed once), then, interleaved
(local, Ray, local, Ray, ...):

* **trivial jobs**: ``--trivial`` jobs that do nothing (a function call returning a dict), through each
  executor: the executor's own cost per job (task submission, scheduling, result transfer);
* **benchmark jobs**: ``--runs`` real benchmark jobs (:func:`iadbe.benchmark.runner.run_job`: a child process
  that imports the training stack) on a dataset folder that does not exist, so each fails at once: the
  path every run takes, without the training. Each Ray task asks for 2 CPUs, so Ray runs them one at a
  time, like the local executor: the difference is overhead, not parallelism.

Prints the median milliseconds per job of each and the ratio Ray / local, and splits Ray's trivial jobs into
a fixed cost per executor run (its progress actor) and a cost per further job (from runs of N and 2N jobs).
The benchmark jobs' figures are dominated by the child's imports, which vary by seconds on a shared machine:
compare them only within one invocation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_job_ms(executor: object, jobs: list, handle: object) -> float:
    from iadbe.benchmark.jobs import Progress

    started = time.perf_counter()
    executor.run(jobs, handle, Progress(total=len(jobs), executor=executor.name), lambda progress, event: None)
    return 1000 * (time.perf_counter() - started) / len(jobs)


def measure(args: argparse.Namespace) -> dict[str, float]:
    import ray

    from iadbe import constants
    from iadbe.benchmark.executors import make_executor
    from iadbe.benchmark.jobs import Job
    from iadbe.benchmark.runs import RunSpec

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"),
             runtime_env={"py_modules": [str(constants.PACKAGE_DIR)], "excludes": ["__pycache__"]})
    cluster_s = time.perf_counter() - started
    try:
        local, remote = make_executor("local"), make_executor("ray", cpus_per_job=2)
        doubled = [Job(f"trivial-{i}", "iadbe.benchmark.jobs:local_location", {}) for i in range(2 * args.trivial)]
        trivial = doubled[: args.trivial]
        missing = str(Path(tempfile.gettempdir()) / "iadbe-bench-no-such-dataset")
        runs = [Job(f"run-{i}", "iadbe.benchmark.runner:run_job",
                    {"spec": RunSpec("padim", "folder", missing, f"c{i}").to_dict(), "timeout_s": 300.0})
                for i in range(args.runs)]

        def ok(outcome: object) -> bool:
            if outcome.error is not None:  # type: ignore[attr-defined]
                raise RuntimeError(f"a job's task died: {outcome.error}")  # type: ignore[attr-defined]
            return True

        per_job_ms(remote, trivial[:4], ok)  # warm: the first tasks start Ray's worker processes
        times: dict[str, list[float]] = {"trivial local": [], "trivial ray": [], "run local": [], "run ray": [],
                                         "ray fixed": [], "ray marginal": []}
        for _ in range(args.repeats):
            times["trivial local"].append(per_job_ms(local, trivial, ok))
            times["trivial ray"].append(per_job_ms(remote, trivial, ok))
            # a run's fixed cost (the progress actor, the connection's checks) against each further job's
            twice = per_job_ms(remote, doubled, ok) * len(doubled)
            once = times["trivial ray"][-1] * len(trivial)
            times["ray marginal"].append((twice - once) / len(trivial))
            times["ray fixed"].append(once - len(trivial) * times["ray marginal"][-1])
            times["run local"].append(per_job_ms(local, runs, ok))
            times["run ray"].append(per_job_ms(remote, runs, ok))
    finally:
        ray.shutdown()
    result = {name: statistics.median(values) for name, values in times.items()}
    result["cluster_start_s"] = cluster_s
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trivial", type=int, default=40, help="trivial jobs per executor and repeat")
    parser.add_argument("--runs", type=int, default=3, help="benchmark jobs (failing at once) per executor and repeat")
    parser.add_argument("--repeats", type=int, default=2)
    result = measure(parser.parse_args())
    print(f"Ray cluster start on this machine: {result['cluster_start_s']:.1f} s (once per invocation)")
    print(f"{'job':<34} {'local ms/job':>13} {'ray ms/job':>11} {'ray - local':>12} {'ratio':>7}")
    for name, label in (("trivial", "trivial (executor only)"), ("run", "benchmark job (child process)")):
        here, there = result[f"{name} local"], result[f"{name} ray"]
        print(f"{label:<34} {here:>13.2f} {there:>11.2f} {there - here:>12.2f} {there / here:>6.2f}x")
    print(f"Ray's trivial jobs split: {result['ray fixed']:.0f} ms once per executor run (the progress actor) + "
          f"{result['ray marginal']:.1f} ms per further job")


if __name__ == "__main__":
    main()
