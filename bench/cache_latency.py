"""p99 latency of predictions on a loaded model while another model loads cold (issue 16, item 4).

    python bench/cache_latency.py [--requests 300] [--threads 2]

Each request does what the app does per call: ``load_model(ref)`` (a cache lookup) and ``predict``. Three
phases, side by side in one run: idle; while a second thread keeps loading another model cold (a copy of
the same model, its ``iadbe.json`` touched before each load so every load misses the cache: read,
rebuild, OpenVINO compile); and the same with the cache of before (one lock held during every load).
Target: p99 during cold loads within 2x the idle p99. Loads also take CPU, so on a small machine part
of any slowdown is contention for the cores, not the cache.
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


def _latencies(model_dir: Path, image, requests: int) -> list[float]:  # noqa: ANN001
    from iadbe.inference import load_model

    times = []
    for _ in range(requests):
        started = time.perf_counter()
        load_model(model_dir, backend="openvino").predict(image)
        times.append(1000 * (time.perf_counter() - started))
    return times


def _while_loading(model_dir: Path, cold_dir: Path, image, requests: int) -> tuple[list[float], int]:  # noqa: ANN001
    from iadbe.inference import load_model

    stop, loads = threading.Event(), [0]

    def load_cold() -> None:
        while not stop.is_set():
            os.utime(cold_dir / "iadbe.json")  # a new cache key: a cold load
            load_model(cold_dir, backend="openvino")
            loads[0] += 1

    loader = threading.Thread(target=load_cold, daemon=True)
    loader.start()
    time.sleep(0.05)
    try:
        return _latencies(model_dir, image, requests), loads[0]
    finally:
        stop.set()
        loader.join()


def measure(requests: int = 300, threads: int = 2) -> list[tuple]:
    """(phase, p50 ms, p99 ms, p99 / idle p99, cold loads during the phase)."""
    import torch

    from iadbe.inference import loading
    from iadbe.inference.images import load_image

    torch.set_num_threads(threads)
    model_dir = trained_model("padim")
    image = load_image(bench_images(1)[0])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cold_dir = Path(shutil.copytree(model_dir, Path(tmp) / "cold"))
        _latencies(model_dir, image, 10)  # warm-up: loaded and cached
        idle = _latencies(model_dir, image, requests)
        rows.append(("idle", statistics.median(idle), _p99(idle), 1.0, 0))
        during, loads = _while_loading(model_dir, cold_dir, image, requests)
        rows.append(("cold loads, per-key cache", statistics.median(during), _p99(during), _p99(during) / _p99(idle),
                     loads))
        original = loading.CACHE
        loading.CACHE = _LockHeldWhileLoading(original.size)
        try:
            _latencies(model_dir, image, 5)
            during, loads = _while_loading(model_dir, cold_dir, image, requests)
        finally:
            loading.CACHE = original
        rows.append(("cold loads, lock held (old)", statistics.median(during), _p99(during),
                     _p99(during) / _p99(idle), loads))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"{'phase':<30} {'p50 ms':>8} {'p99 ms':>8} {'p99/idle':>9} {'cold loads':>11}  "
          f"(PaDiM, OpenVINO, {args.requests} requests, {args.threads} threads)")
    for phase, p50, p99, ratio, loads in measure(args.requests, args.threads):
        verdict = "" if phase == "idle" else ("  PASS" if ratio <= 2 else "  FAIL")
        print(f"{phase:<30} {p50:8.1f} {p99:8.1f} {ratio:8.2f}x {loads:11d}{verdict}")


if __name__ == "__main__":
    main()
