"""Load: 8 ``gradio_client`` clients send 25 predictions each to the running app at the same time.

Every answer must be the score the library computes for that very image (no cross-talk between sessions),
none may fail, and the server's memory (RSS) must level off. Latency percentiles are printed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

try:
    from .test_app import FIXTURE_MODEL, running_app
except ImportError:
    from test_app import FIXTURE_MODEL, running_app

CLIENTS = 8
REQUESTS = 25
IMAGES_PER_CLIENT = 5
SCORE_TOL = 2e-6  # the app rounds scores to 6 decimals; same backend (OpenVINO) and same decoding as the library


def rss_bytes(pid: int) -> int:
    """Resident memory of a process: psutil when installed, else /proc (Linux)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    raise RuntimeError("cannot read the server's memory")


def make_images(folder: Path, base: Path) -> list[Path]:
    """CLIENTS x IMAGES_PER_CLIENT distinct images: a normal image with a slightly brighter small square,
    brighter and elsewhere in each, so every image has its own score (well below saturation at 1.0)."""
    folder.mkdir(parents=True)
    source = np.asarray(Image.open(base).convert("RGB")).astype(np.int16)
    rng = np.random.default_rng(42)
    paths = []
    for index in range(CLIENTS * IMAGES_PER_CLIENT):
        image = source.copy()
        side = 2 + index % 3
        y, x = rng.integers(4, source.shape[0] - 4 - side, 2)
        image[y: y + side, x: x + side] += 10 + index
        path = folder / f"load_{index:03d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@dataclass
class LoadRun:
    """What :func:`run_clients` saw: latency per answered request, failures, wall time, RSS samples."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rss_samples: list[tuple[int, int]] = field(default_factory=list)  # (requests answered, server RSS)
    wall: float = 0.0


def run_clients(ask: Callable[[int, int], str | None], server_pid: int) -> LoadRun:
    """CLIENTS threads start together and each calls ``ask(client, request)`` REQUESTS times.

    ``ask`` returns None for a right answer or a problem string; an exception counts as a failure. The
    server's RSS is sampled every 40 answers.
    """
    run = LoadRun()
    lock = threading.Lock()
    start_line = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        start_line.wait()
        for request in range(REQUESTS):
            began = time.perf_counter()
            try:
                problem = ask(index, request)
            except Exception as error:  # noqa: BLE001 - every failure is reported by the test
                with lock:
                    run.failures.append(f"client {index} request {request}: {type(error).__name__}: {error}")
                continue
            took = time.perf_counter() - began
            with lock:
                run.latencies.append(took)
                if problem:
                    run.failures.append(f"client {index} request {request}: {problem}")
                if len(run.latencies) % 40 == 0:
                    run.rss_samples.append((len(run.latencies), rss_bytes(server_pid)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    run.wall = time.perf_counter() - began
    return run


def report(summary: str, run: LoadRun, capsys: pytest.CaptureFixture) -> None:
    with capsys.disabled():
        print("\n" + summary)
        for line in run.failures[:20]:
            print("  " + line)


def expected_scores(app, images: list[Path]) -> dict[str, float]:
    """The library's own score of each load image, through the backend the app uses on a CPU."""
    from iadbe.inference import load_model

    model = load_model(app.store / FIXTURE_MODEL, backend="openvino")  # "auto" in the app: OpenVINO on CPU
    return {path.name: prediction.score for path, prediction in zip(images, model.predict(images))}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, hub_server):
    return running_app(tmp_path_factory, hub_server)


def test_eight_clients_twenty_five_predictions_each(app, tmp_path, capsys):
    from gradio_client import Client, handle_file

    images = make_images(tmp_path / "load", app.data / "good" / "000.png")
    expected = expected_scores(app, images)
    scores = np.sort(np.asarray(list(expected.values())))
    gap = float(np.diff(scores).min())
    assert gap > 2 * SCORE_TOL, f"two load images score alike (gap {gap:.2e}): cross-talk could go unseen"

    # download_files=False: the clients share this machine's CPUs with the server; they check scores, not pictures
    clients = [Client(app.url, verbose=False, download_files=False) for _ in range(CLIENTS)]
    warm = clients[0].predict(handle_file(str(images[0])), FIXTURE_MODEL, "auto", 0.5, 0.5, api_name="/predict")
    assert warm[7]["backend"] == "openvino"
    rss_start = rss_bytes(app.process.pid)

    def ask(index: int, request: int) -> str | None:
        own = images[index * IMAGES_PER_CLIENT: (index + 1) * IMAGES_PER_CLIENT]
        path = own[request % len(own)]
        result = clients[index].predict(handle_file(str(path)), FIXTURE_MODEL, "auto", 0.5, 0.5,
                                        api_name="/predict")
        shown, details = result[4], result[7]  # the score box shows 4 decimals, the details 6
        if details["file"] != path.name:
            return f"answer for {details['file']} to a request for {path.name}"
        if abs(details["score"] - expected[path.name]) > SCORE_TOL or abs(shown - details["score"]) > 6e-5:
            return f"{path.name}: score {details['score']} but the library says {expected[path.name]:.6f}"
        return None

    run = run_clients(ask, app.process.pid)
    rss_end = rss_bytes(app.process.pid)
    served, latencies = len(run.latencies), run.latencies
    mb = 1024 * 1024
    half = [rss for done, rss in run.rss_samples if done >= served // 2]
    summary = (f"load: {CLIENTS} clients x {REQUESTS} predictions: {served} served, {len(run.failures)} failed, "
               f"{served / run.wall:.1f} req/s; latency p50 {percentile(latencies, 50) * 1000:.0f} ms, "
               f"p95 {percentile(latencies, 95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
               f"scores {scores[0]:.3f}..{scores[-1]:.3f} (closest pair {gap:.1e} apart); "
               f"server RSS {rss_start / mb:.0f} -> {rss_end / mb:.0f} MB "
               f"(samples {[round(r / mb) for _, r in run.rss_samples]})")
    report(summary, run, capsys)
    assert not run.failures, run.failures[:20]
    assert served == CLIENTS * REQUESTS
    assert app.process.poll() is None
    # bounded memory: little growth overall, and the second half of the run adds (almost) nothing
    assert rss_end - rss_start < 200 * mb, summary
    if half:
        assert rss_end - half[0] < 50 * mb, summary


def test_eight_rest_clients_twenty_five_predictions_each(app, tmp_path, capsys):
    """The same load through ``POST /api/v1/predict``: right scores for the right images, none refused (8
    clients fit the waiting room of ``QUEUE_MAX_SIZE``), memory levels off."""
    import requests

    images = make_images(tmp_path / "load", app.data / "good" / "000.png")
    expected = expected_scores(app, images)
    predict = app.url.rstrip("/") + "/api/v1/predict"
    sessions = [requests.Session() for _ in range(CLIENTS)]
    assert sessions[0].post(predict, params={"model": FIXTURE_MODEL}, data=images[0].read_bytes()).status_code == 200
    rss_start = rss_bytes(app.process.pid)
    payloads = [(path.name, path.read_bytes()) for path in images]

    def ask(index: int, request: int) -> str | None:
        own = payloads[index * IMAGES_PER_CLIENT: (index + 1) * IMAGES_PER_CLIENT]
        name, data = own[request % len(own)]
        response = sessions[index].post(predict, params={"model": FIXTURE_MODEL, "name": name}, data=data,
                                        timeout=120)
        body = response.json()
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {body}"
        if body["file"] != name:
            return f"answer for {body['file']} to a request for {name}"
        if abs(body["score"] - expected[name]) > SCORE_TOL:
            return f"{name}: score {body['score']} but the library says {expected[name]:.6f}"
        return None

    run = run_clients(ask, app.process.pid)
    rss_end = rss_bytes(app.process.pid)
    for session in sessions:
        session.close()
    mb = 1024 * 1024
    latencies = run.latencies
    summary = (f"REST load: {CLIENTS} clients x {REQUESTS} predictions: {len(latencies)} answered, "
               f"{len(run.failures)} failed, {len(latencies) / run.wall:.1f} req/s; latency p50 "
               f"{percentile(latencies, 50) * 1000:.0f} ms, p95 {percentile(latencies, 95) * 1000:.0f} ms; "
               f"server RSS {rss_start / mb:.0f} -> {rss_end / mb:.0f} MB")
    report(summary, run, capsys)
    assert not run.failures, run.failures[:20]
    assert len(latencies) == CLIENTS * REQUESTS
    assert app.process.poll() is None
    assert rss_end - rss_start < 200 * mb, summary
