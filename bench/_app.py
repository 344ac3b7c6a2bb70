"""Start the real app (``python app.py``) in a subprocess for the benchmarks, with given models in its store."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen
    start_s: float
    home: Path

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the server process (VmHWM), in MB."""
        from iadbe.benchmark.worker import linux_high_water_kib

        kib = linux_high_water_kib(self.process.pid)
        return float("nan") if kib is None else kib / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.home, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(model_dirs: dict[str, Path], timeout_s: float = 120) -> RunningApp:
    """``python app.py`` on a free port with ``model_dirs`` (name -> directory) copied into a fresh store."""
    home = Path(tempfile.mkdtemp(prefix="iadbe-bench-app-"))
    store = home / "models"
    for name, source in model_dirs.items():
        shutil.copytree(source, store / name)
    port = free_port()
    env = {**os.environ, "IADBE_HOME": str(home), "IADBE_MODEL_STORE": str(store), "PORT": str(port),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_TEMP_DIR": str(home / "gradio_tmp")}
    return _serve([sys.executable, "app.py"], env, port, home, timeout_s)


def start_gradio_floor(image: str, timeout_s: float = 60, gradio_defaults: bool = False) -> RunningApp:
    """``bench/_gradio_floor.py``: a no-op app with the same ``/predict`` inputs and outputs as IADBE's,
    its views copies of ``image``; at IADBE's Gradio settings, or ``gradio_defaults``."""
    home = Path(tempfile.mkdtemp(prefix="iadbe-bench-floor-"))
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(home / "gradio_tmp")}
    command = [sys.executable, str(ROOT / "bench" / "_gradio_floor.py"), str(port), image,
               *(["--gradio-defaults"] if gradio_defaults else [])]
    return _serve(command, env, port, home, timeout_s)


def _serve(command: list[str], env: dict[str, str], port: int, home: Path, timeout_s: float) -> RunningApp:
    """Run ``command`` and wait until it answers on ``port``."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"{command[-1]} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return RunningApp(url, process, time.perf_counter() - started, home)
        except OSError:
            time.sleep(0.2)
    process.kill()
    shutil.rmtree(home, ignore_errors=True)
    raise RuntimeError(f"{command[-1]} did not answer within {timeout_s} s")
