"""The benchmark on a Ray cluster (``--executor ray``): the same records as the local executor, a killed Ray
worker recorded as a failed run and resumed, and IADBE without Ray (a clear message, nothing imported).

The Ray tests share one local cluster per module (2 CPUs, no dashboard, its files under pytest's temp dir),
started only by the tests that need it and shut down after the module. Without Ray installed they skip.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_app import PROJECT, make_parts_dataset

SHARED = PROJECT.parent / "shared" / "data"
TIRE, TRANSISTOR = SHARED / "mvtec_3d", SHARED / "mvtec_ad"
#: What differs between two runs of the same spec apart from their results: timings and the machine.
NOT_COMPARED = {"wall_time_s", "training_time_s", "inference_ms", "peak_rss_mb", "machine"}


@pytest.fixture(scope="module")
def worker_hf_home(tmp_path_factory) -> Path:
    """The Hugging Face home of the cluster's workers: their own cache, not the driver's."""
    return tmp_path_factory.mktemp("worker_hf")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory, hub_server, worker_hf_home):
    """A Ray cluster on this machine for the module's tests; the driver's iadbe travels to its workers, whose
    Hub client (only theirs: set in the workers' runtime environment) reads from the test Hub server into
    their own cache."""
    ray = pytest.importorskip("ray")
    from hub_server import HUB_TOKEN

    from iadbe import constants

    if ray.is_initialized():
        pytest.skip("this test process is already connected to a Ray cluster")
    workers_env = {"HF_ENDPOINT": hub_server.url.rstrip("/"), "HF_TOKEN": HUB_TOKEN, "HF_HOME": str(worker_hf_home),
                   "HF_HUB_CACHE": str(worker_hf_home / "hub"), "HF_HUB_OFFLINE": "0",
                   "HF_HUB_DISABLE_TELEMETRY": "1"}
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")),
             logging_level="WARNING", log_to_driver=False,
             runtime_env={"py_modules": [str(constants.PACKAGE_DIR)], "excludes": ["__pycache__"],
                          "env_vars": workers_env})
    try:
        yield ray
    finally:
        ray.shutdown()


def _same(local: object, remote: object, where: str = "") -> list[str]:
    """Where two records differ: floats within 1e-6 (the Ray task runs torch on 1 thread, the local run on
    all cores: sums may be added in another order), everything else exactly."""
    if isinstance(local, dict) and isinstance(remote, dict):
        keys = set(local) | set(remote)
        return [d for k in sorted(keys) for d in _same(local.get(k), remote.get(k), f"{where}.{k}")]
    if isinstance(local, list) and isinstance(remote, list) and len(local) == len(remote):
        return [d for i, (a, b) in enumerate(zip(local, remote)) for d in _same(a, b, f"{where}[{i}]")]
    if isinstance(local, float) and isinstance(remote, float):
        return [] if math.isclose(local, remote, rel_tol=1e-6, abs_tol=1e-6) else [f"{where}: {local} != {remote}"]
    return [] if local == remote else [f"{where}: {local!r} != {remote!r}"]


@pytest.mark.slow
@pytest.mark.skipif(not ((TIRE / "tire").is_dir() and (TRANSISTOR / "transistor").is_dir()),
                    reason=f"real data (tire, transistor) not found under {SHARED}")
def test_a_real_grid_on_ray_gives_the_records_of_the_local_executor(ray_cluster, tmp_path):
    from iadbe.benchmark import load_records, run_benchmark
    from iadbe.benchmark.executors import make_executor

    grids = [("mvtec3d", TIRE, "tire"), ("mvtec", TRANSISTOR, "transistor")]
    settings = dict(image_size=64, max_train_images=12, timeout_s=600)
    lines: list[str] = []
    for name, executor in (("local", None), ("ray", make_executor("ray", cpus_per_job=1))):
        for kind, root, category in grids:
            result = run_benchmark(["padim", "patchcore"], kind, root, [category], out=tmp_path / name / kind,
                                   executor=executor, progress=lambda f, m: lines.append(m), **settings)
            assert result.failed == [], [r.get("log_tail") for r in result.records]
            assert (result.out / "results.md").is_file() and (result.out / "auroc_vs_time.png").is_file()
    for kind, _, category in grids:
        local = {r["run_id"]: r for r in load_records(tmp_path / "local" / kind)}
        remote = {r["run_id"]: r for r in load_records(tmp_path / "ray" / kind)}
        assert set(local) == set(remote) == {f"padim__{category}__seed0", f"patchcore__{category}__seed0"}
        for run_id, record in remote.items():
            assert record["status"] == "ok"
            assert record["machine"]["executor"] == "ray" and record["machine"]["node_id"]
            assert local[run_id]["machine"]["executor"] == "local" and "platform" in record["machine"]
            differences = _same({k: v for k, v in local[run_id].items() if k not in NOT_COMPARED},
                                {k: v for k, v in record.items() if k not in NOT_COMPARED}, run_id)
            assert differences == []
        ours = (tmp_path / "ray" / kind / "results.md").read_text(encoding="utf-8")
        assert "| PaDiM |" in ours and "| PatchCore |" in ours
    assert any(line.startswith("[ray] 1 done, 1 running, 0 failed, 0 waiting of 2") for line in lines), lines
    assert any(line.startswith("[local] 2 done, 0 running, 0 failed, 0 waiting of 2") for line in lines)


def _job_process(run_id: str, timeout_s: float = 300):
    """The child process of the job ``run_id`` (its temporary folder carries the run id), once it started."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            if "iadbe.benchmark.worker" in cmdline and f"iadbe-job-{run_id}-" in cmdline:
                return process
        time.sleep(0.5)
    raise AssertionError(f"the job {run_id} did not start within {timeout_s} s")


@pytest.mark.slow
def test_a_killed_ray_worker_is_a_failed_run_and_the_next_invocation_runs_only_it(ray_cluster, tmp_path):
    import threading

    import psutil

    from iadbe.benchmark import run_benchmark
    from iadbe.benchmark.executors import make_executor

    root = tmp_path / "parts"
    for seed, category in enumerate(("alpha", "beta")):
        make_parts_dataset(root / category, seed=seed, size=64)
    out = tmp_path / "bench"
    killed: dict[str, object] = {}

    def kill_the_worker_running_beta() -> None:
        try:
            child = _job_process("padim__beta__seed0", timeout_s=600)
            worker = child.parent()
            killed["worker"], killed["cmdline"], killed["child"] = worker.pid, " ".join(worker.cmdline()), child
            worker.send_signal(signal.SIGKILL)
        except Exception as err:  # noqa: BLE001 - shown by the assertion below
            killed["error"] = repr(err)

    killer = threading.Thread(target=kill_the_worker_running_beta, daemon=True)
    killer.start()
    first = run_benchmark(["padim"], "folder", root, out=out, image_size=64, timeout_s=600,
                          executor=make_executor("ray", cpus_per_job=1))
    killer.join(timeout=5)
    assert "ray" in str(killed.get("cmdline")), killed  # a Ray worker was killed, not our own child
    assert first.ran == ["padim__alpha__seed0"] and first.failed == ["padim__beta__seed0"]
    beta = json.loads((out / "runs" / "padim__beta__seed0.json").read_text())
    assert beta["status"] == "failed" and beta["reason"] == "the Ray worker running it died (killed, or out of memory)"
    assert beta["machine"]["executor"] == "ray" and beta["machine"]["hostname"]
    child = killed["child"]
    assert isinstance(child, psutil.Process)

    def gone() -> bool:
        try:
            return child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 10  # the run's own process dies with its worker
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone()
    alpha_written = (out / "runs" / "padim__alpha__seed0.json").stat().st_mtime_ns

    second = run_benchmark(["padim"], "folder", root, out=out, image_size=64, timeout_s=600,
                           executor=make_executor("ray", cpus_per_job=1))
    assert second.skipped == ["padim__alpha__seed0"] and second.ran == ["padim__beta__seed0"]
    assert second.failed == [] and (out / "runs" / "padim__alpha__seed0.json").stat().st_mtime_ns == alpha_written
    assert {r["run_id"]: r["status"] for r in second.records} == {"padim__alpha__seed0": "ok",
                                                                  "padim__beta__seed0": "ok"}


@pytest.mark.slow
def test_workers_fetch_a_hub_dataset_into_their_own_cache(ray_cluster, hub_server, worker_hf_home, tmp_path):
    from hub_server import HUB_USER

    from iadbe.benchmark import run_benchmark
    from iadbe.benchmark.executors import make_executor

    parts = make_parts_dataset(tmp_path / "parts" / "alpha", seed=3, size=64).parent
    repo_id = f"{HUB_USER}/ray-parts-{time.time_ns()}"
    hub_server.seed(repo_id, {p.relative_to(parts).as_posix(): p.read_bytes() for p in parts.rglob("*.png")},
                    repo_type="dataset")
    ref = f"hf://datasets/{repo_id}"
    result = run_benchmark(["padim"], "folder", ref, ["alpha"], out=tmp_path / "out", image_size=64,
                           timeout_s=600, executor=make_executor("ray", cpus_per_job=1))
    (record,) = result.records
    assert record["status"] == "ok", record.get("log_tail")
    assert record["spec"]["root"] == ref  # the record names the reference, not a worker's folder
    assert record["test_counts"]["images"] > 0
    fetched = list((worker_hf_home / "hub").glob(f"datasets--{repo_id.replace('/', '--')}/snapshots/*/alpha/good"))
    assert len(fetched) == 1, "the worker did not download the dataset into its own cache"


@pytest.mark.slow
def test_the_zoo_on_ray_trains_on_workers_and_pushes_from_the_driver(ray_cluster, hub_env, tmp_path):
    from iadbe.benchmark.executors import make_executor
    from iadbe.manifest import load_manifest
    from iadbe.zoo import build_zoo

    root = tmp_path / "parts"
    for seed, category in enumerate(("alpha", "beta")):
        make_parts_dataset(root / category, seed=seed, size=64)
    messages: list[str] = []
    kwargs = dict(dataset="folder", root=root, models=["padim"], repo_id=hub_env.repo_id("ray-zoo"), image_size=64,
                  manifest_path=tmp_path / "m.yaml", work_dir=tmp_path / "zoo", progress=messages.append,
                  executor=make_executor("ray", cpus_per_job=1))
    first = build_zoo(**kwargs)
    assert [(i.category, i.status) for i in first] == [("alpha", "pushed"), ("beta", "pushed")], messages
    for category in ("alpha", "beta"):  # sent back by the workers, written here, then pushed from here
        assert (tmp_path / "zoo" / f"padim__{category}" / "weights.safetensors").is_file()
    assert sorted(e.category for e in load_manifest(tmp_path / "m.yaml").models) == ["alpha", "beta"]
    assert any(m.startswith("[ray] 2 done, 0 running, 0 failed") for m in messages), messages
    again = build_zoo(**kwargs)
    assert [i.status for i in again] == ["skipped", "skipped"]


# --------------------------------------------------------------------------- without Ray (fast)
BLOCK_RAY = textwrap.dedent("""
    import sys

    class BlockRay:
        def find_spec(self, name, path=None, target=None):
            if name == "ray" or name.startswith("ray."):
                raise ImportError("No module named 'ray' (hidden by the test)")
            return None

    sys.meta_path.insert(0, BlockRay())
""")


def test_without_ray_iadbe_runs_and_the_ray_executor_says_how_to_install_it(tmp_path):
    code = BLOCK_RAY + textwrap.dedent(f"""
        import iadbe, iadbe.benchmark, iadbe.benchmark.executors, iadbe.benchmark.runner, iadbe.zoo
        from iadbe.benchmark.executors import make_executor
        assert make_executor("local").name == "local"
        assert "ray" not in sys.modules
        from iadbe.cli import main
        sys.exit(main(["benchmark", "--models", "padim", "--dataset", "folder", "--root", {str(tmp_path)!r},
                       "--out", {str(tmp_path / "out")!r}, "--executor", "ray"]))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert done.returncode != 0, done.stdout
    assert "pip install ray" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out").exists()  # nothing ran


def test_job_resources_come_from_the_detector_and_can_be_overridden():
    from iadbe.benchmark.jobs import ONE_PASS_GPU_SHARE, TRAINED_GPU_SHARE, Resources, job_resources
    from iadbe.errors import SettingsError

    assert job_resources("padim") == Resources(2.0, ONE_PASS_GPU_SHARE)  # one pass: a quarter of a GPU
    assert job_resources("draem") == Resources(2.0, TRAINED_GPU_SHARE)  # trained for epochs: a whole one
    assert job_resources("draem", cluster_gpus=False) == Resources(2.0, 0.0)
    assert job_resources("padim", cpus=4, gpus=0.5, cluster_gpus=False) == Resources(4.0, 0.5)
    with pytest.raises(SettingsError, match="whole"):
        job_resources("padim", gpus=1.5)
    with pytest.raises(SettingsError, match="CPUs"):
        job_resources("padim", cpus=0)


def test_the_local_executor_counts_and_records_a_job_that_raises():
    from iadbe.benchmark.executors import make_executor
    from iadbe.benchmark.jobs import Job, Progress
    from iadbe.errors import SettingsError

    jobs = [Job("fine", "json:loads", {"s": '{"status": "ok"}'}), Job("broken", "json:loads", {"s": "{"})]
    outcomes, lines = [], []

    def handle(outcome):
        outcomes.append(outcome)
        return outcome.error is None

    progress = Progress(total=3, skipped=1)
    make_executor("local").run(jobs, handle, progress, lambda state, event: lines.append(f"{state.line()}: {event}"))
    assert outcomes[0].result == {"status": "ok"} and outcomes[0].location["executor"] == "local"
    assert outcomes[1].result is None and outcomes[1].error.startswith("JSONDecodeError")
    assert lines[-1] == "[local] 1 done, 0 running, 1 failed, 0 waiting of 3, 1 skipped: broken: FAILED"
    assert progress.fraction == 1.0
    with pytest.raises(SettingsError, match="--executor ray"):
        make_executor("local", address="ray://somewhere:10001")
    with pytest.raises(SettingsError, match="unknown executor"):
        make_executor("dask")


def test_the_app_runs_on_the_servers_own_cluster_only(monkeypatch):
    import gradio as gr

    from iadbe import constants
    from iadbe.app import benchmark_tab

    monkeypatch.setattr(constants, "RAY_ADDRESS", "")
    assert benchmark_tab.where_choices() == [("this server", "local")]
    assert benchmark_tab.executor_for("local").name == "local"
    with pytest.raises(gr.Error, match="no Ray cluster configured"):
        benchmark_tab.executor_for("ray")
    monkeypatch.setattr(constants, "RAY_ADDRESS", "10.1.2.3:6379")
    assert [value for _, value in benchmark_tab.where_choices()] == ["local", "ray"]
    with pytest.raises(gr.Error, match="Unknown place"):  # a visitor's address is no choice
        benchmark_tab.executor_for("ray://198.51.100.7:10001")
    pytest.importorskip("ray")
    executor = benchmark_tab.executor_for("ray")  # made, not connected: it connects when a run starts
    assert executor.name == "ray" and executor.address == "10.1.2.3:6379"


@pytest.mark.slow
def test_the_cli_starts_its_own_ray_cluster_and_records_a_failing_run(tmp_path):
    """``iadbe benchmark --executor ray --address local``: a cluster started for the run (the driver's code
    shipped to it), the progress lines, a run that fails in its child recorded with its machine, the cluster
    stopped at the end (the command returns)."""
    pytest.importorskip("ray")
    import shutil
    import tempfile

    root = make_parts_dataset(tmp_path / "parts" / "alpha", size=64).parent
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        done = subprocess.run(
            [sys.executable, "-m", "iadbe", "benchmark", "--models", "padim", "--dataset", "folder", "--root",
             str(root), "--image-size", "64", "--max-train-images", "1", "--out", str(tmp_path / "out"),
             "--executor", "ray", "--address", "local", "--cpus-per-job", "1"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONPATH": str(PROJECT), "RAY_TMPDIR": ray_tmp})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[ray] 0 done, 0 running, 1 failed, 0 waiting of 1: padim__alpha__seed0: FAILED" in done.stdout
    assert "0 run, 0 skipped (already done), 1 failed" in done.stdout
    record = json.loads((tmp_path / "out" / "runs" / "padim__alpha__seed0.json").read_text())
    assert record["status"] == "failed" and record["exit_code"] == 1 and "training images" in record["log_tail"]
    assert record["machine"]["executor"] == "ray" and record["machine"]["node_id"]


@pytest.mark.slow
def test_the_driver_stops_a_task_that_runs_past_its_limit(ray_cluster, monkeypatch):
    from iadbe.benchmark import ray_executor
    from iadbe.benchmark.executors import make_executor
    from iadbe.benchmark.jobs import Job, Progress

    monkeypatch.setattr(ray_executor, "DRIVER_GRACE_S", 1.0)  # the driver's own grace, on this driver only
    hung = Job("hung", "subprocess:run", {"args": ["sleep", "20"]}, timeout_s=1.0)
    outcomes = []
    started = time.monotonic()
    make_executor("ray", cpus_per_job=1).run([hung], lambda o: outcomes.append(o) or False, Progress(total=1),
                                             lambda progress, event: None)
    (outcome,) = outcomes
    assert outcome.result is None and outcome.error.startswith("stopped by the driver: no result 2 s after it started")
    assert time.monotonic() - started < 15


def test_a_model_sent_back_by_a_worker_is_written_inside_its_folder_only(tmp_path):
    from iadbe.errors import StoreError
    from iadbe.zoo import _write_model_dir

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "stale.txt").write_text("from an older attempt")
    _write_model_dir(tmp_path / "m", {"iadbe.json": b"{}", "openvino/model.xml": b"<xml/>"})
    assert sorted(p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file()) == [
        "iadbe.json", "openvino/model.xml"]
    with pytest.raises(StoreError, match="outside"):
        _write_model_dir(tmp_path / "n", {"../evil.txt": b"x"})
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "n").exists()
