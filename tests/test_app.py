"""The Gradio app end to end: a real server in a subprocess, driven through ``gradio_client``.

A small PaDiM (64 px, synthetic folder dataset) is trained once per session into a temporary model
store; the app is started on a free port with ``IADBE_HOME`` / ``IADBE_MODEL_STORE`` pointing there.
``tests/test_browser.py`` reuses the same server (:func:`running_app`).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
FIXTURE_MODEL = "app-test-padim"
START_TIMEOUT_S = 120


# --------------------------------------------------------------------------- data
def make_parts_dataset(root: Path, seed: int = 0, size: int = 64, good: int = 14, defects: int = 4) -> Path:
    """A tiny ``good/`` + ``defect/`` + ``masks/`` dataset: noisy flat texture, bright square defects."""
    rng = np.random.default_rng(seed)
    for folder in ("good", "defect", "masks"):
        (root / folder).mkdir(parents=True)
    base = rng.integers(90, 160, (size, size, 3)).astype(np.int16)
    for index in range(good):
        image = np.clip(base + rng.integers(-12, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "good" / f"{index:03d}.png")
    for index in range(defects):
        image = np.clip(base + rng.integers(-12, 12, base.shape), 0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(4, size - 20, 2)
        image[y : y + 14, x : x + 14] = 250
        mask[y : y + 14, x : x + 14] = 255
        Image.fromarray(image).save(root / "defect" / f"d{index:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"d{index:03d}.png")
    return root


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, Path(folder.name) / path.relative_to(folder))
    return archive


# --------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AppServer:
    url: str
    home: Path
    store: Path
    data: Path
    log: Path
    process: subprocess.Popen
    start_s: float
    #: CPU seconds the server process spent until its page answered (None where /proc is absent)
    start_cpu_s: float | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:] if self.log.exists() else ""


def start_app(home: Path, store: Path, data: Path, hub_url: str, **extra_env: str) -> AppServer:
    """``iadbe.app.launch`` in a subprocess on a free port; returns once the page answers.

    The only Hub it can reach is the test server at ``hub_url``; it has no token of its own.
    ``extra_env`` is added to its environment (e.g. ``IADBE_MANIFEST``).
    """
    port = free_port()
    env = {**os.environ, "IADBE_HOME": str(home), "IADBE_MODEL_STORE": str(store), "HF_ENDPOINT": hub_url,
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(home / "gradio_tmp"),
           "HF_TOKEN_PATH": str(home / "no_hf_token")}
    for name in ("PORT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        env.pop(name, None)
    env.update(extra_env)
    log = home / "server.log"
    code = f"from iadbe.app import launch; launch('127.0.0.1', {port})"
    begin = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, env=env, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    server = AppServer(url, home, store, data, log, process, 0.0)
    while time.perf_counter() - begin < START_TIMEOUT_S:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    server.start_s = time.perf_counter() - begin
                    server.start_cpu_s = _cpu_seconds(process.pid)
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"the app did not answer within {START_TIMEOUT_S} s:\n{server.log_tail()}")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_SERVER: list[AppServer] = []


def running_app(tmp_path_factory: pytest.TempPathFactory, hub_server) -> AppServer:
    """One app server per test session (with the fixture model in its store), shared by both test files."""
    if _SERVER and _SERVER[0].process.poll() is None:
        return _SERVER[0]
    from iadbe.training import train

    base = tmp_path_factory.mktemp("app")
    home, store = base / "home", base / "home" / "models"
    data = make_parts_dataset(base / "parts")
    train("padim", "folder", data, backbone="tf_efficientnet_lite0", image_size=64, out=store / FIXTURE_MODEL)
    server = start_app(home, store, data, hub_server.url)
    atexit.register(server.stop)  # also when only tests/test_browser.py runs
    _SERVER[:] = [server]
    return server


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, hub_server):
    server = running_app(tmp_path_factory, hub_server)
    yield server
    server.stop()


@pytest.fixture()
def client(app_server: AppServer):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


# --------------------------------------------------------------------------- tests
def test_importing_the_app_imports_neither_torch_nor_gradio():
    code = "import sys, iadbe.app; print(sorted(m for m in ('torch', 'gradio', 'anomalib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_server_address_reads_the_environment(monkeypatch):
    from iadbe.app.server import server_address

    for name in ("PORT", "GRADIO_SERVER_PORT", "GRADIO_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert server_address() == ("0.0.0.0", 7860)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7001")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "127.0.0.1")
    assert server_address() == ("127.0.0.1", 7001)
    monkeypatch.setenv("PORT", "8080")
    assert server_address() == ("127.0.0.1", 8080)
    assert server_address("::", 9000) == ("::", 9000)


def test_a_false_alarm_percentage_of_0_or_empty_means_the_default():
    import gradio as gr

    from iadbe.app.common import rate_from_percent

    # a browser sends an emptied gr.Number as 0: every tab reads it as "the default", never as a 0 % rate
    assert [rate_from_percent(value) for value in (None, "", 0, 0.0)] == [None] * 4
    assert rate_from_percent(1) == pytest.approx(0.01) and rate_from_percent("0.1") == pytest.approx(0.001)
    with pytest.raises(gr.Error, match="false alarms must be a percentage"):
        rate_from_percent("a lot")


def test_blocked_paths_keep_only_the_outermost_folders(tmp_path, monkeypatch):
    from iadbe.app.server import blocked_paths, outermost

    home = tmp_path / "hf"
    assert outermost([home / "token", home, tmp_path / "store", home, tmp_path / "hfx"]) == [
        str(home), str(tmp_path / "hfx"), str(tmp_path / "store")]  # "hfx" is beside "hf", not in it
    # the app's own list: the token file in the Hugging Face home is covered by the home
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(home))
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(home / "token"))
    listed = blocked_paths()
    assert str(home) in listed and str(home / "token") not in listed
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "elsewhere" / "token"))
    assert str(tmp_path / "elsewhere" / "token") in blocked_paths()


def test_the_apps_queue_skips_gradios_event_statistics_and_only_its_own():
    """Gradio's queue builds a pandas summary of its last 10,000 events after each event (issue 17:
    1-8 ms per call); the app's queue never does, and another Gradio app in the process still does."""
    import gradio as gr

    from iadbe.app.server import skip_event_statistics

    def make_queue():
        with gr.Blocks() as demo:
            gr.Button().click(lambda: None)
        return demo.queue()

    ours, theirs = make_queue(), make_queue()
    assert skip_event_statistics(ours)
    records = [{"time": 0.0, "status": "success", "process_time": 0.01, "function": "predict",
                "session_hash": f"s{i}"} for i in range(50)]
    for demo in (ours, theirs):
        demo._queue.events_recorded = len(records)
    before = ours._queue.cached_event_analytics_summary
    ours._queue._get_df = lambda _: pytest.fail("the app's queue summarised its events")
    assert ours._queue.compute_analytics_summary(records) is before
    summary = theirs._queue.compute_analytics_summary(records)
    assert summary["functions"]["predict"]["total_requests"] == 50


async def _running_loop_module() -> str:
    import asyncio

    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop has no Windows build (requirements.txt)")
def test_the_server_parses_http_in_c_on_libuv_and_leaves_asyncio_alone():
    """requirements.txt installs httptools and uvloop, which uvicorn (Gradio's server) then uses: ~0.3 ms less
    per REST request (issue 17). Only the server's own loop is uvloop's: the process's asyncio policy and a
    plain ``asyncio.run`` elsewhere are untouched."""
    import asyncio

    import gradio as gr

    from iadbe.app.client import connect

    policy = type(asyncio.get_event_loop_policy())
    with gr.Blocks() as demo:
        shown = gr.Textbox()
        gr.Button().click(_running_loop_module, None, shown, api_name="loop")
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        assert demo.server.config.http_protocol_class.__name__ == "HttpToolsProtocol"
        assert connect(demo.local_url).predict(api_name="/loop").startswith("uvloop")
        assert type(asyncio.get_event_loop_policy()) is policy
        assert asyncio.run(_running_loop_module()).startswith("asyncio")
    finally:
        demo.close()


def test_old_view_folders_are_removed_off_the_request_path(tmp_path, monkeypatch):
    """Every /predict makes a view folder; the scan for old ones runs at most once a minute and on the app's
    pruning thread, not in the visitor's request (issue 17: 0.2 s for 1,500 folders)."""
    import threading

    from iadbe.app import common

    monkeypatch.setattr(common, "_LAST_PRUNE", {})
    root = tmp_path / "views"
    old, young = root / "old", root / "young"
    for folder in (old, young):
        folder.mkdir(parents=True)
        (folder / "view_heatmap.jpg").write_bytes(b"jpeg")
    hours_ago = time.time() - 2 * common.VIEW_MAX_AGE_S
    os.utime(old, (hours_ago, hours_ago))
    release = threading.Event()
    busy = common._PRUNER.submit(release.wait, 30)  # the pruning thread is busy: the request must not wait
    try:
        pending = common._prune(root, common.VIEW_MAX_AGE_S, every_s=60, background=True)
        assert pending is not None and not pending.done() and old.exists()
        assert common._prune(root, common.VIEW_MAX_AGE_S, every_s=60, background=True) is None  # within the minute
    finally:
        release.set()
    busy.result(30)
    pending.result(30)
    assert not old.exists() and young.exists()


def test_demo_dataset_layout_and_examples(tmp_path, monkeypatch):
    from iadbe import constants
    from iadbe.data import load_dataset
    from iadbe.demo import CROP, N_DEFECT, N_GOOD, build_demo_dataset, demo_examples

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path)
    root = build_demo_dataset()
    assert root == tmp_path / "demo_dataset"
    assert len(list((root / "good").glob("*.png"))) == N_GOOD
    defects = sorted((root / "defect").glob("*.png"))
    assert len(defects) == N_DEFECT
    for image in defects:
        mask = np.asarray(Image.open(root / "masks" / image.name))
        assert mask.shape == (CROP, CROP) and 0 < (mask > 0).mean() < 0.2
    assert np.asarray(Image.open(defects[0])).shape == (CROP, CROP, 3)
    splits = load_dataset("folder", root)
    assert splits.layout == "good_defect" and sum(s.mask is not None for s in splits.test) == N_DEFECT
    examples = demo_examples()
    assert any(p.parent.name == "good" for p in examples) and any(p.parent.name == "defect" for p in examples)
    assert build_demo_dataset() == root  # second call: nothing rebuilt


#: the app's score and the library's for the same image, model and backend: the same computation, in another process
SCORE_TOL = 1e-4


def library_prediction(model_dir: Path, image: Path, backend: str = "auto"):  # noqa: ANN201
    """What the library predicts for ``image`` (the app must show the same)."""
    from iadbe.inference import load_model

    return load_model(model_dir, backend=backend).predict(image)[0]


def test_app_starts_fast_and_lists_the_model(app_server, client):
    print(f"app start: {app_server.start_s:.1f} s wall, {app_server.start_cpu_s} s CPU")
    # The start-up target is 15 s (README: 4.7 s measured). The start-up is mostly single-threaded imports,
    # so on an idle machine its wall time is about its CPU time; CI machines and this shared one are rarely
    # idle (22 s wall was seen under 5 concurrent jobs), so the target is checked on the CPU time it took.
    took = app_server.start_cpu_s if app_server.start_cpu_s is not None else app_server.start_s
    assert took < 15, app_server.log_tail()
    table = client.predict(api_name="/models")
    ids = [row[0] for row in table["data"]]
    assert FIXTURE_MODEL in ids
    assert client.predict(api_name="/status")["state"] in {"ready", "idle"}
    # Gradio's monitoring page would list every visitor's calls and their timings: switched off
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(app_server.url + "monitoring/summary", timeout=10)
    assert refused.value.code == 403


def test_predict_rerender_and_bad_images(app_server, client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    image = sorted((app_server.data / "defect").glob("*.png"))[0]
    began = time.perf_counter()
    original, heatmap, mask, contours, score, label, run, details = client.predict(
        handle_file(str(image)), FIXTURE_MODEL, "auto", 0.5, 0.5, api_name="/predict")
    print(f"/predict: {time.perf_counter() - began:.2f} s, {run}")
    assert details["backend"] in {"torch", "openvino"} and details["file"] == image.name
    expected = library_prediction(app_server.store / FIXTURE_MODEL, image, details["backend"])
    assert score == pytest.approx(expected.score, abs=SCORE_TOL) and label == expected.label_text
    for path in (original, heatmap, mask, contours):
        assert Image.open(path).size == (64, 64)
    assert np.abs(np.asarray(Image.open(heatmap), np.int16) - np.asarray(Image.open(original), np.int16)).mean() > 1

    # the sliders re-draw the kept prediction: the model does not run again
    heatmap2, _, _, label2, details2 = client.predict(1.0, 0.9, api_name="/rerender")
    assert label2 == "normal" and details2["threshold"] == 1.0 and Path(heatmap2).is_file()

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.png"
    Image.new("1", (10_000, 9_000)).save(huge)  # 90 MP: above the decompression-bomb limit
    for bad, message in ((corrupt, "not an image|corrupt|truncated"), (empty, "empty"), (huge, "above the limit")):
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(bad)), FIXTURE_MODEL, "auto", 0.5, 0.5, api_name="/predict")
    with pytest.raises(AppError, match="Unknown model"):
        client.predict(handle_file(str(image)), "/etc", "auto", 0.5, 0.5, api_name="/predict")

    # still serving
    again = client.predict(handle_file(str(image)), FIXTURE_MODEL, "torch", 0.5, 0.5, api_name="/predict")
    assert again[4] == pytest.approx(score, abs=0.02) and again[7]["backend"] == "torch"


def test_connect_keeps_tls_verification_and_answers_like_a_plain_client(app_server, client):
    """iadbe.app.client.connect shares one verifying SSL context instead of loading CA files per request."""
    import ssl

    from gradio_client import handle_file

    from iadbe.app.client import connect

    fast = connect(app_server.url)
    assert isinstance(fast.ssl_verify, ssl.SSLContext)
    assert fast.ssl_verify.verify_mode == ssl.CERT_REQUIRED and fast.ssl_verify.check_hostname
    assert connect(app_server.url, ssl_verify=False).ssl_verify is False  # an explicit choice is kept
    image = handle_file(str(sorted((app_server.data / "defect").glob("*.png"))[0]))
    plain = client.predict(image, FIXTURE_MODEL, "torch", 0.5, 0.5, api_name="/predict")
    shared = fast.predict(image, FIXTURE_MODEL, "torch", 0.5, 0.5, api_name="/predict")
    assert shared[4] == pytest.approx(plain[4], abs=1e-6) and shared[5] == plain[5]
    assert Image.open(shared[1]).size == Image.open(plain[1]).size


def test_connect_changes_nothing_in_gradio_client(app_server):
    """connect() once patched gradio_client.utils.time for the whole process (issue 16); now only the client
    it returns differs: its message queues wake the waiting call."""
    import time

    from gradio_client import Client, utils

    from iadbe.app.client import _WakingQueues, connect

    fast = connect(app_server.url)
    assert utils.time is time
    assert isinstance(fast.pending_messages_per_event, _WakingQueues)
    plain = Client(app_server.url, verbose=False)
    assert type(plain.pending_messages_per_event) is dict and utils.time is time


def test_a_result_is_picked_up_as_it_arrives(monkeypatch):
    """gradio_client's wait loop sleeps 50 ms whenever its queue is empty; with the queues of connect()'s
    client the message wakes it, and it never reaches that sleep."""
    import threading
    import time
    from collections import deque
    from types import SimpleNamespace

    from gradio_client import utils

    from iadbe.app.client import _WakingQueues

    slept: list[float] = []
    monkeypatch.setattr(utils, "time", SimpleNamespace(sleep=lambda s: (slept.append(s), time.sleep(0.001))))
    message = {"msg": "process_completed", "event_id": "e", "success": True, "output": {"data": [1]}}

    def wait_for_result(queues: dict) -> tuple[list, list[float]]:
        slept.clear()
        queues.setdefault("e", deque())
        helper = utils.Communicator(threading.Lock(), utils.JobStatus(), lambda *x: x, "")
        done: list = []
        waiter = threading.Thread(target=lambda: done.append(
            utils.stream_sse_v1plus(helper, queues, threading.Lock(), "e", "sse_v3")))
        waiter.start()
        time.sleep(0.2)  # the waiter is now inside its wait loop
        queues["e"].append(message)
        waiter.join(10)
        return done, list(slept)

    done, plain_sleeps = wait_for_result({})
    assert done and plain_sleeps  # the plain queue polls with sleeps
    done, waking_sleeps = wait_for_result(_WakingQueues())
    assert done and done[0]["data"] == [1] and waking_sleeps == []


def test_predict_batch_writes_a_zip_and_skips_bad_files(app_server, client, tmp_path):
    from gradio_client import handle_file

    data = app_server.data
    images = sorted((data / "good").glob("*.png"))[:2] + sorted((data / "defect").glob("*.png"))[:1]
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    gallery, table, archive, summary = client.predict(
        [handle_file(str(p)) for p in [*images, bad]], FIXTURE_MODEL, "auto", 0.5, 0.5, api_name="/predict_batch")
    assert len(gallery) == 3 and "1 skipped" in summary
    rows = {row[0]: row for row in table["data"]}
    assert rows["bad.jpg"][2] == "error"
    for path in images:  # the scores and labels of the library, for each image
        expected = library_prediction(app_server.store / FIXTURE_MODEL, path)
        assert rows[path.name][1] == pytest.approx(expected.score, abs=SCORE_TOL)
        assert rows[path.name][2] == expected.label_text
    with zipfile.ZipFile(archive) as bundle:
        names = set(bundle.namelist())
    assert "predictions.csv" in names
    assert sum(n.startswith("overlays/") for n in names) == 9 and sum(n.startswith("masks/") for n in names) == 3


def result_test_images(app_server, model_id: str) -> int:
    import json

    return json.loads((app_server.store / model_id / "iadbe.json").read_text())["test_counts"]["images"]


def test_train_with_a_time_cap_stops_early_and_says_so(app_server, client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    archive = zip_folder(make_parts_dataset(tmp_path / "capped", seed=2), tmp_path / "capped.zip")
    with pytest.raises(AppError, match="less than minimum value 0"):  # the Number field refuses it itself
        client.predict(handle_file(str(archive)), "", "", "stfpm", "tf_efficientnet_lite0", 64, 500, 0,
                       "app-test-capped", -1, api_name="/train")
    status, _, _, _, result, _, _ = client.predict(
        handle_file(str(archive)), "", "", "stfpm", "tf_efficientnet_lite0", 64, 500, 0, "app-test-capped", 0.05,
        api_name="/train")
    assert "0.05-minute cap" in status and 0 < result["epochs_trained"] < 500, (status, result)


def test_inspect_cancel_train_then_predict_and_compare(app_server, client, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    data = make_parts_dataset(tmp_path / "widgets", seed=1)
    archive = zip_folder(data, tmp_path / "widgets.zip")
    report = client.predict(handle_file(str(archive)), "", "", api_name="/inspect")
    assert "good_defect" in report and "masks for all 4 anomalous images" in report
    wrong = tmp_path / "wrong.zip"
    wrong.write_bytes(os.urandom(300))
    with pytest.raises(AppError, match="neither a folder nor a zip"):
        client.predict(handle_file(str(wrong)), "", "", api_name="/inspect")

    # a cancelled run leaves nothing in the store (STFPM for 500 epochs: the cancel surely lands mid-run)
    job = client.submit(handle_file(str(archive)), "", "", "stfpm", "tf_efficientnet_lite0", 64, 500, 0,
                        "app-test-cancelled", api_name="/train")
    deadline = time.time() + 60
    while time.time() < deadline and not client.predict(api_name="/cancel").startswith("Cancelling"):
        time.sleep(0.5)  # /cancel answers "No training of yours is running." until the run has started
    with pytest.raises(AppError, match="Training cancelled"):
        job.result(timeout=120)

    began = time.perf_counter()
    status, metrics, _, gallery, result, histogram, confusion = client.predict(
        handle_file(str(archive)), "", "", "padim", "tf_efficientnet_lite0", 64, 1, 0, "app-test-trained", 0, 5,
        api_name="/train")
    print(f"/train (after a cancelled run): {time.perf_counter() - began:.1f} s")
    assert "app-test-trained" in status and result["model_id"] == "app-test-trained"
    values = {row[0]: row[1] for row in metrics["data"]}
    assert "image_AUROC" in values and 0 <= values["image_AUROC"] <= 100
    assert gallery and all(Path(item["image"]).is_file() for item in gallery)
    assert histogram and Path(histogram).is_file()  # the validation scores with the threshold line
    counts = {row[0]: row[1:] for row in confusion["data"]}
    assert sum(counts["good part"]) + sum(counts["defect"]) == result_test_images(app_server, "app-test-trained")
    store = sorted(p.name for p in app_server.store.iterdir())
    assert "app-test-trained" in store and "app-test-cancelled" not in store
    assert not [name for name in store if name.startswith(".partial")], store

    fresh = Client(app_server.url, verbose=False)  # a new session: the model is not in its initial choices
    ids = [row[0] for row in fresh.predict(api_name="/models")["data"]]
    assert "app-test-trained" in ids
    image = sorted((data / "defect").glob("*.png"))[0]
    score = fresh.predict(handle_file(str(image)), "app-test-trained", "auto", 0.5, 0.5, api_name="/predict")[4]
    assert score == pytest.approx(library_prediction(app_server.store / "app-test-trained", image).score, abs=SCORE_TOL)
    panels, scores = fresh.predict(handle_file(str(image)), [FIXTURE_MODEL, "app-test-trained"], "auto", 0.5, 0.5,
                                   api_name="/compare")
    assert len(panels) == 2 and [row[0] for row in scores["data"]] == [FIXTURE_MODEL, "app-test-trained"]


def test_push_needs_a_valid_token_and_never_echoes_it(app_server, client, hub_server):
    from gradio_client.exceptions import AppError
    from hub_server import HUB_TOKEN, HUB_USER

    repo = f"{HUB_USER}/app-push"
    with pytest.raises(AppError, match="needs your own Hugging Face token"):
        client.predict(FIXTURE_MODEL, repo, False, "", "", api_name="/push")
    wrong = "hf_" + "Wrong" * 7
    with pytest.raises(AppError, match="token missing or invalid") as caught:
        client.predict(FIXTURE_MODEL, repo, False, wrong, "", api_name="/push")
    assert wrong not in str(caught.value)
    message, token_box = client.predict(FIXTURE_MODEL, repo, True, HUB_TOKEN, "padim/parts", api_name="/push")
    assert message.startswith("Pushed") and f"hf://{repo}/padim/parts@" in message and token_box == ""
    assert HUB_TOKEN not in message
    log = app_server.log.read_text(encoding="utf-8", errors="replace")
    assert HUB_TOKEN not in log and wrong not in log


def test_benchmark_runs_through_the_app_and_its_results_can_be_browsed(app_server, client):
    import shutil

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="read only under"):  # a public app reads no arbitrary server folder
        client.predict("padim", "folder", "/etc", "", 64, 0, api_name="/benchmark")
    data = app_server.home / "datasets" / "parts"
    if not data.is_dir():
        shutil.copytree(app_server.data, data)
    table, report, plot, comparison = client.predict("padim", "folder", str(data), "", 64, 0, api_name="/benchmark")
    (row,) = table["data"]
    assert row[0] == "padim" and row[1] == "parts" and 0.0 <= row[3] <= 100.0
    assert "| PaDiM |" in report and plot
    out = app_server.home / "benchmark" / "folder"
    assert {"results.csv", "results.md", "results.tex", "auroc_vs_time.png", "radar.png"} <= {
        p.name for p in out.iterdir()}
    listed = client.predict(api_name="/benchmark_results")  # the browser's list (a dropdown update)
    choices = listed.get("choices", []) if isinstance(listed, dict) else [listed]
    paths = [str(c[0] if isinstance(c, (list, tuple)) else c) for c in choices]
    assert str(out / "results.csv") in paths, listed
    shown, _, _ = client.predict(str(out / "results.csv"), api_name="/benchmark_result")
    shown = shown.get("value", shown)  # a dataframe value: headers + data
    assert shown["headers"][:3] == ["mode", "model", "backbone"] and shown["data"][0][1] == "padim"
    with pytest.raises(AppError, match="not in the list of choices|Only files of the benchmark results"):
        client.predict("/etc/passwd", api_name="/benchmark_result")
    # the run is on the leaderboard (issue 21), with how its thresholds were chosen (the worker records it)
    outputs = client.predict("folder", "image_AUROC", [], [], api_name="/leaderboard")
    board = outputs[4].get("value", outputs[4])
    ours = [dict(zip(board["headers"], values)) for values in board["data"]]
    (mine,) = [r for r in ours if r["benchmark"] == "results/folder"]
    assert mine["model"] == "padim" and mine["parts"] == pytest.approx(row[3], abs=0.01)
    assert mine["thresholds"] == "validation normals, 5 % false alarms" and mine["image size"] == "64"
    exported = client.predict("folder", "image_AUROC", [], [], api_name="/leaderboard_export")
    assert sorted(Path(str(f)).suffix for f in exported) == [".csv", ".md", ".tex"]
    markdown = next(Path(str(f)) for f in exported if str(f).endswith(".md")).read_text()
    assert "| padim | results/folder | **" in markdown


@pytest.mark.slow
def test_demo_model_builds_in_about_a_minute(tmp_path, monkeypatch):
    from iadbe import constants
    from iadbe.demo import DEMO_NAME, ensure_demo_model

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path)
    monkeypatch.setattr(constants, "MODEL_STORE", tmp_path / "models")
    began = time.perf_counter()
    model_dir = ensure_demo_model()
    took = time.perf_counter() - began
    meta = json.loads((model_dir / "iadbe.json").read_text())
    print(f"demo model: {took:.0f} s, {meta['metrics']}")
    assert model_dir == tmp_path / "models" / DEMO_NAME and meta["name"].startswith("demo-")
    assert meta["metrics"]["image_AUROC"] >= 0.9 and meta["metrics"]["pixel_AUROC"] >= 0.9
    assert took < 300
    from iadbe.demo import demo_examples
    from iadbe.inference import load_model

    examples = demo_examples()  # what the app offers to click: each defect comes out anomalous, each good normal
    predictions = load_model(model_dir).predict(examples)
    print("demo examples:", {p.name: round(pred.score, 3) for p, pred in zip(examples, predictions)})
    labels = {p.name: pred.label_text for p, pred in zip(examples, predictions)}
    assert labels == {p.name: "anomalous" if p.parent.name == "defect" else "normal" for p in examples}
    assert ensure_demo_model() == model_dir  # cached: no second training


def test_minutes_cap_reads_the_time_cap_fields():
    import gradio as gr

    from iadbe.app.common import minutes_cap

    assert minutes_cap(None) is None and minutes_cap("") is None and minutes_cap(0) is None
    assert minutes_cap(2.5) == 2.5 and minutes_cap("3") == 3.0
    for bad in ("abc", -1, float("nan"), float("inf")):
        with pytest.raises(gr.Error, match="max training minutes"):
            minutes_cap(bad)
