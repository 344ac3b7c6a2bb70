"""Windows: no module needs POSIX-only parts, and the benchmark runner works with a plain spawn (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def test_every_module_imports_without_resource_and_fcntl() -> None:
    """As on Windows, where ``resource`` and ``fcntl`` do not exist (nor ``os.killpg``)."""
    script = textwrap.dedent(
        """
        import importlib, json, os, pkgutil, sys, warnings
        warnings.filterwarnings("ignore")
        sys.modules["resource"] = None  # `import resource` now raises ImportError
        sys.modules["fcntl"] = None
        del os.killpg
        import iadbe
        failed = {}
        names = [m.name for m in pkgutil.walk_packages(iadbe.__path__, "iadbe.") if not m.name.endswith("__main__")]
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as error:  # noqa: BLE001 - reported
                failed[name] = f"{type(error).__name__}: {error}"
        from iadbe.benchmark import worker
        worker.linux_high_water_kib = lambda: None  # no /proc there either
        print("RESULT " + json.dumps({"modules": names, "failed": failed, "peak": worker.peak_rss_mb()}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")))
    assert "iadbe.benchmark.worker" in result["modules"] and "iadbe.benchmark.runner" in result["modules"]
    assert result["failed"] == {}
    assert result["peak"] is None  # no resource module, not Windows: no figure rather than a crash


@pytest.fixture
def spawn_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner as on Windows: no session, no preexec_fn, no killpg."""
    from iadbe.benchmark import runner

    monkeypatch.setattr(runner, "_process_groups", lambda: False)
    monkeypatch.delattr(runner.os, "killpg")
    original = subprocess.Popen

    def popen(*args, **kwargs):
        assert "preexec_fn" not in kwargs and "start_new_session" not in kwargs
        return original(*args, **kwargs)

    monkeypatch.setattr(runner.subprocess, "Popen", popen)


def test_the_runners_spawn_only_path_records_failures_and_timeouts(spawn_only: None, tmp_path: Path) -> None:
    from iadbe.benchmark.runner import run_in_process
    from iadbe.benchmark.runs import RunSpec

    broken = RunSpec("padim", "folder", str(tmp_path / "missing"), "x")
    record = run_in_process(broken, tmp_path / "out", timeout_s=300)
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert "not found" in (record["reason"] + record["log_tail"]).lower()

    slow = RunSpec("padim", "folder", str(tmp_path / "missing"), "y")
    record = run_in_process(slow, tmp_path / "out", timeout_s=0.05)  # killed while it still imports
    assert record["status"] == "failed" and "stopped after the" in record["reason"]
