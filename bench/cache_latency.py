"""p99 latency of predictions on a loaded model while another model loads cold (issue 16, item 4).

    python bench/cache_latency.py [--requests 300] [--cold-loads 3] [--threads 2]

Each request does what the app does per call: ``load_model(ref)`` (a cache lookup) and ``predict``. Three
phases, side by side in one run: idle; while a second thread loads another model cold a few times (a copy
of the same model, its ``iadbe.json`` touched before each load so every load misses the cache: read,
rebuild, OpenVINO compile); and the same with the cache of before (one lock held during every load).
Target: p99 during cold loads within 2x the idle p99. Loads also take CPU (an OpenVINO compile uses every
core), so a control phase runs the same cold loads in another process: no shared lock, only the competition
for the cores. On a small machine the cache is right when its phase matches that control.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _models import bench_images, trained_model


class _LockHeldWhileLoading:
    """ModelCache.get_or_load as it was before issue 16: every lookup waits for any load in progress."""

    def __init__(self, size: int) -> None:
        from collections import OrderedDict

        self.size, self._items, self._lock = size, OrderedDict(), threading.RLock()

    def get_or_load(self, key, load):  # noqa: ANN001, ANN201
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            model = self._items[key] = load()
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return model


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _request(model_dir: Path, image) -> float:  # noqa: ANN001
    from iadbe.inference import load_model

    started = time.perf_counter()
    load_model(model_dir, backend="openvino").predict(image)
    return 1000 * (time.perf_counter() - started)


def _while_loading(model_dir: Path, cold_dir: Path, image, cold_loads: int) -> list[float]:  # noqa: ANN001
    """Request latencies while another thread loads ``cold_dir`` cold ``cold_loads`` times in a row."""
    from iadbe.inference import load_model

    def load_cold() -> None:
        for _ in range(cold_loads):
            os.utime(cold_dir / "iadbe.json", ns=(time.time_ns(), time.time_ns()))  # a new cache key: a cold load
            load_model(cold_dir, backend="openvino")

    loader = threading.Thread(target=load_cold, daemon=True)
    loader.start()
    times = []
    while loader.is_alive():
        times.append(_request(model_dir, image))
    loader.join()
    return times


_CHILD = """
import os, sys, time
from iadbe.inference import load_model
cold = sys.argv[1]
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[2])):
    os.utime(os.path.join(cold, "iadbe.json"), ns=(time.time_ns(), time.time_ns()))
    load_model(cold, backend="openvino")
"""


def _while_another_process_loads(model_dir: Path, cold_dir: Path, image, cold_loads: int) -> list[float]:  # noqa: ANN001
    """The control: the same cold loads in a separate process (no shared lock, no shared GIL), so the requests
    feel only the competition for the CPU cores."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(cold_dir), str(cold_loads)], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    child.stdin.write("go\n")
    child.stdin.flush()
    times = []
    while child.poll() is None:
        times.append(_request(model_dir, image))
    return times


def measure(requests: int = 300, cold_loads: int = 3, threads: int = 2, report=print) -> list[tuple]:  # noqa: ANN001
    """(phase, requests, p50 ms, p99 ms, p99 / idle p99), each phase reported as it ends."""
    import torch

    from iadbe.inference import loading
    from iadbe.images import load_image

    torch.set_num_threads(threads)
    model_dir = trained_model("padim")
    image = load_image(bench_images(1)[0])
    rows = []

    def row(phase: str, times: list[float], idle_p99: float) -> None:
        rows.append((phase, len(times), statistics.median(times), _p99(times), _p99(times) / idle_p99))
        report(rows[-1])

    with tempfile.TemporaryDirectory() as tmp:
        cold_dir = Path(shutil.copytree(model_dir, Path(tmp) / "cold"))
        for _ in range(10):  # warm-up: loaded and cached
            _request(model_dir, image)
        idle = [_request(model_dir, image) for _ in range(requests)]
        row("idle", idle, _p99(idle))
        row(f"{cold_loads} cold loads, per-key cache", _while_loading(model_dir, cold_dir, image, cold_loads),
            _p99(idle))
        row(f"{cold_loads} cold loads, other process", _while_another_process_loads(model_dir, cold_dir, image,
                                                                                 cold_loads), _p99(idle))
        original = loading.CACHE
        loading.CACHE = _LockHeldWhileLoading(original.size)
        try:
            _request(model_dir, image)
            row(f"{cold_loads} cold loads, lock held (old)", _while_loading(model_dir, cold_dir, image, cold_loads),
                _p99(idle))
        finally:
            loading.CACHE = original
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="requests of the idle phase")
    parser.add_argument("--cold-loads", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"{'phase':<34} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99/idle':>9}  "
          f"(PaDiM, OpenVINO, {args.threads} threads)", flush=True)

    def report(row: tuple) -> None:
        phase, count, p50, p99, ratio = row
        verdict = "" if phase == "idle" else ("  PASS" if ratio <= 2 else "  FAIL")
        print(f"{phase:<34} {count:8d} {p50:8.1f} {p99:8.1f} {ratio:8.2f}x{verdict}", flush=True)

    measure(args.requests, args.cold_loads, args.threads, report)


if __name__ == "__main__":
    main()
