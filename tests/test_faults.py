"""Faults: training killed with SIGKILL, a store that cannot be written, a full disk.

The model store must stay consistent (no partial model listed, stale staging folders cleaned up, the next
training works) and every write failure must be a clear :class:`~iadbe.errors.StoreError`, never a traceback.

How the failures are made (this suite may run as root, where ``chmod`` does not stop writes):

* read-only: a store path that is a *file* (works for root too); plain ``chmod 0o555`` where not root;
* disk full: at the OS boundary, without mocks of IADBE: ``RLIMIT_FSIZE`` makes the kernel refuse writes
  past a size (``EFBIG``), and one test replaces ``os.replace`` with a function raising ``ENOSPC``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    from .test_app import FIXTURE_MODEL, PROJECT, SCORE_TOL, library_prediction, running_app
except ImportError:
    from test_app import FIXTURE_MODEL, PROJECT, SCORE_TOL, library_prediction, running_app

from iadbe import store
from iadbe.errors import StoreError


@contextlib.contextmanager
def file_size_limit(limit: int):
    """The kernel refuses to grow any file of this process past ``limit`` bytes (EFBIG) inside the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --------------------------------------------------------------------------- staging and cleanup
def test_stale_staging_folders_are_ignored_then_cleaned(tmp_path):
    good = tmp_path / "kept-model"
    good.mkdir()
    (good / store.CONFIG_FILE).write_text("{}")  # not a valid config: listing skips it without failing
    stale = tmp_path / f".partial-{dead_pid()}-crashed-abcd1234"
    live = tmp_path / f".partial-{os.getpid()}-running-abcd1234"
    old_unknown = tmp_path / ".partial-legacy-x1y2z3w4"
    young_unknown = tmp_path / ".partial-legacy-q1q2q3q4"
    for folder in (stale, live, old_unknown, young_unknown):
        folder.mkdir()
        (folder / store.CONFIG_FILE).write_text('{"schema_version": 1, "detector": {}, "postprocess": {}}')
    os.utime(old_unknown, (time.time() - 2 * store.STALE_AFTER_S,) * 2)
    assert store.list_store(tmp_path) == []
    assert store.clean_partials(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["kept-model", live.name, young_unknown.name])


def test_crash_between_the_renames_of_an_overwrite_restores_the_old_model(tmp_path):
    backup = tmp_path / f".partial-{dead_pid()}-my-model.old"
    backup.mkdir()
    (backup / "weights.safetensors").write_bytes(b"old")
    assert store.clean_partials(tmp_path) == 0
    assert (tmp_path / "my-model" / "weights.safetensors").read_bytes() == b"old" and not backup.exists()


def test_failed_block_leaves_nothing_and_overwrite_is_atomic(tmp_path):
    target = tmp_path / "m"
    with pytest.raises(RuntimeError, match="boom"), store.staged_model_dir(target) as staging:
        (staging / "weights.safetensors").write_bytes(b"new")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with store.staged_model_dir(target) as staging:
        (staging / "a").write_text("1")
    with pytest.raises(StoreError, match="already exists"), store.staged_model_dir(target) as staging:
        (staging / "a").write_text("2")
    with store.staged_model_dir(target, overwrite=True) as staging:
        (staging / "a").write_text("3")
    assert (target / "a").read_text() == "3" and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# --------------------------------------------------------------------------- unwritable store, full disk
def test_store_path_that_is_a_file_is_reported_before_training(tmp_path, capsys):
    from iadbe.cli import main

    blocker = tmp_path / "store"
    blocker.write_text("I am a file")
    with pytest.raises(StoreError, match="a file is in the way"):
        store.check_writable(blocker)
    with pytest.raises(StoreError, match="a file is in the way"), store.staged_model_dir(blocker / "model"):
        pass
    began = time.perf_counter()
    code = main(["train", "--model", "padim", "--dataset", "folder", "--root", str(tmp_path / "nowhere"),
                 "--out", str(blocker / "model")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "a file is in the way" in err, err
    assert time.perf_counter() - began < 10  # refused before reading the dataset or training


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the file case covers root")
def test_read_only_store(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="read-only or no permission"):
            store.check_writable(tmp_path)
    finally:
        tmp_path.chmod(0o755)


def test_file_size_limit_while_writing_weights_is_a_store_error(tmp_path):
    """The kernel refuses the weights file half-way (EFBIG, as on a full disk): StoreError, nothing left."""
    import torch

    target = tmp_path / "model"
    with file_size_limit(512 * 1024), pytest.raises(StoreError, match="too large|disk"):
        with store.staged_model_dir(target) as staging:
            store.save_weights({"w": torch.zeros(1024 * 1024)}, staging / store.WEIGHTS_FILE)  # 4 MB
    assert list(tmp_path.iterdir()) == []


def test_openvino_write_failure_is_recognised_as_a_full_disk(tmp_path):
    """OpenVINO says only "iostream error" when it cannot write; the store checks the folder and says why."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    parameter = ops.parameter([1, 300_000], np.float32)
    graph = ov.Model([ops.add(parameter, ops.constant(np.ones((1, 300_000), np.float32)))], [parameter])
    with file_size_limit(512 * 1024), pytest.raises(StoreError, match="too large|disk") as caught:
        with store.staged_model_dir(tmp_path / "model") as staging:
            ov.save_model(graph, str(staging / "openvino" / "model.xml"))
    assert isinstance(caught.value.__cause__, RuntimeError)  # OpenVINO's own error stays attached
    assert list(tmp_path.iterdir()) == []


def test_no_space_left_at_the_final_rename(tmp_path, monkeypatch):
    """``os.replace`` raising ENOSPC (monkeypatched at the OS boundary): clear message, no partial model."""
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(StoreError, match="the disk is full"):
        with store.staged_model_dir(tmp_path / "model") as staging:
            (staging / "weights.safetensors").write_bytes(b"x")
            monkeypatch.setattr(os, "replace", full)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- SIGKILL during `iadbe train`
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, hub_server):
    return running_app(tmp_path_factory, hub_server)


def test_sigkill_while_the_model_is_written_leaves_the_store_consistent(app, tmp_path, monkeypatch):
    """``iadbe train`` is killed (SIGKILL) the moment its staging folder appears, i.e. while weights and the
    OpenVINO export are being written. The store lists nothing partial, the next training cleans the stale
    folder up and succeeds."""
    from iadbe import constants
    from iadbe.catalog import build_catalog
    from iadbe.training import train

    models = tmp_path / "models"
    models.mkdir()
    (models / "kept").symlink_to(app.store / FIXTURE_MODEL, target_is_directory=True)
    env = {**os.environ, "IADBE_HOME": str(tmp_path / "home"), "IADBE_MODEL_STORE": str(models)}
    command = [sys.executable, "-m", "iadbe", "train", "--model", "padim", "--dataset", "folder", "--root",
               str(app.data), "--image-size", "64", "--name", "killed"]
    log = tmp_path / "train.log"
    process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    staging: list[Path] = []
    deadline = time.perf_counter() + 240
    while process.poll() is None and time.perf_counter() < deadline and not staging:
        staging = [p for p in models.iterdir() if p.name.startswith(".partial-")]
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert staging, f"the run ended before writing: {log.read_text(errors='replace')[-2000:]}"
    assert process.returncode == -signal.SIGKILL
    left = sorted(p.name for p in models.iterdir())
    print(f"after SIGKILL while writing: {left}")
    assert "killed" not in left and any(name.startswith(f".partial-{process.pid}-killed") for name in left)
    assert [m.path.name for m in store.list_store(models)] == ["kept"]
    assert [e.id for e in build_catalog(store=models) if e.source == "local"] == ["kept"]

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path / "home")
    monkeypatch.setattr(constants, "MODEL_STORE", models)
    result = train("padim", "folder", app.data, image_size=64, name="killed", export=False)
    assert result.model_dir == models / "killed"
    assert sorted(p.name for p in models.iterdir()) == ["kept", "killed"]  # the stale staging folder is gone
    assert [m.path.name for m in store.list_store(models)] == ["kept", "killed"]


# --------------------------------------------------------------------------- the app
def test_app_reports_an_unwritable_store_and_keeps_serving(app, tmp_path):
    """The running app's store is swapped for a file for one request: /train answers with the StoreError's
    message (no traceback, nothing trained), then the store is put back and predictions still work."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app.url, verbose=False)
    aside = app.store.with_name(app.store.name + "-aside")
    os.replace(app.store, aside)
    try:
        app.store.write_text("not a folder")
        began = time.perf_counter()
        with pytest.raises(AppError, match="a file is in the way") as caught:
            client.predict(None, str(app.data), "", "padim", "tf_efficientnet_lite0", 64, 0, 0, "never",
                           api_name="/train")
        assert time.perf_counter() - began < 30
        assert "Traceback" not in str(caught.value) and "Unexpected error" not in str(caught.value)
    finally:
        app.store.unlink(missing_ok=True)
        os.replace(aside, app.store)
    image = str(app.data / "good" / "000.png")
    score = client.predict(handle_file(image), FIXTURE_MODEL, "auto", 0.5, 0.5, api_name="/predict")[4]
    assert score == pytest.approx(library_prediction(app.store / FIXTURE_MODEL, Path(image)).score, abs=SCORE_TOL)
    assert "Traceback" not in app.log_tail(20000).split("a file is in the way")[-1]


def test_app_start_cleans_stale_staging_and_old_uploads(tmp_path, monkeypatch):
    """What ``launch()`` does before serving: staging folders of dead trainings and every extracted upload go."""
    from iadbe import constants
    from iadbe.app.common import uploads_root
    from iadbe.app.server import _clean_leftovers
    from iadbe.app.training_tab import end_session

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path / "home")
    monkeypatch.setattr(constants, "MODEL_STORE", tmp_path / "home" / "models")
    stale = constants.MODEL_STORE / f".partial-{dead_pid()}-gone-abcd1234"
    stale.mkdir(parents=True)
    upload = uploads_root() / "some-session" / "x"
    upload.mkdir(parents=True)
    _clean_leftovers()
    assert not stale.exists() and not uploads_root().exists()

    class Request:  # what Gradio passes to the unload handler
        session_hash = "abc123"

    for session in ("abc123", "other"):
        (uploads_root() / session / "zip").mkdir(parents=True)
    end_session(Request())
    assert sorted(p.name for p in uploads_root().iterdir()) == ["other"]
