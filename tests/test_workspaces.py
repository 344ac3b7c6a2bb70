"""iadbe.workspaces: who a visitor is, what is theirs, quotas, expiry and the training queue (no training here)."""

from __future__ import annotations

import json
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from iadbe import constants
from iadbe.errors import QuotaError, WorkspaceError
from iadbe.workspaces import TrainingQueue, expire_workspaces, identify, open_workspace


@pytest.fixture()
def shared(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "SHARED_MODE", True)
    monkeypatch.setattr(constants, "WORKSPACES_DIR", tmp_path / "workspaces")
    monkeypatch.setattr(constants, "MODEL_STORE", tmp_path / "store")
    monkeypatch.setattr(constants, "WORKSPACE_MAX_BYTES", 1_000_000)
    monkeypatch.setattr(constants, "WORKSPACE_MAX_MODELS", 2)
    return tmp_path


def fake_model(models_dir: Path, name: str, payload: int = 10) -> Path:
    """A folder the store lists as a model (iadbe.json with the keys it checks) plus ``payload`` bytes."""
    folder = models_dir / name
    folder.mkdir(parents=True)
    meta = {"schema_version": 1, "name": name, "model": "padim", "detector": {}, "postprocess": {}}
    (folder / "iadbe.json").write_text(json.dumps(meta))
    (folder / "weights.safetensors").write_bytes(bytes(payload))
    return folder


def test_visitors_are_told_apart_by_account_then_session(shared):
    alice = identify("alice", "sess-1")
    assert alice.key == "hf-alice" and alice.kind == "account" and not alice.anonymous
    anon = identify(None, "sess-1")
    assert anon.anonymous and anon.key.startswith("s-") and "sess-1" not in anon.key
    assert identify(None, "sess-1") == anon and identify(None, "sess-2").key != anon.key
    with pytest.raises(WorkspaceError, match="no session"):
        identify(None, None)
    for bad in ("../alice", "a/b", "", "x" * 200):
        if bad:
            with pytest.raises(WorkspaceError):
                identify(bad, "s")
    assert identify("alice", "s", shared=False).kind == "local"
    local = open_workspace(identify(None, None, shared=False))
    assert not local.private and local.models_dir == shared / "store" and local.usage_bytes() == 0


def test_a_visitor_reaches_only_their_own_models(shared):
    a, b = open_workspace(identify(None, "A")), open_workspace(identify(None, "B"))
    fake_model(a.models_dir, "mine")
    assert a.model_ids() == ["mine"] and b.model_ids() == []
    assert a.model_dir("mine") == a.models_dir / "mine"
    guesses = ["mine", str(a.models_dir / "mine"), f"../{a.visitor.key}/models/mine", "../../store", ""]
    for guess in guesses:
        with pytest.raises(WorkspaceError, match="not one of your models"):
            b.model_dir(guess)
        with pytest.raises(WorkspaceError):
            b.delete_model(guess)
    assert (a.models_dir / "mine").is_dir()
    a.delete_model("mine")
    assert a.model_ids() == [] and not (a.models_dir / "mine").exists()


def test_model_count_and_disk_quotas(shared):
    ws = open_workspace(identify("carol", "s"))
    ws.check_model_slot()
    fake_model(ws.models_dir, "one")
    fake_model(ws.models_dir, "two")
    with pytest.raises(QuotaError, match="2 models"):
        ws.check_model_slot()
    ws.delete_model("two")
    ws.check_model_slot()
    fake_model(ws.models_dir, "big", payload=1_000_000)
    ws.delete_model("one")  # one model: the count allows another, the disk does not
    with pytest.raises(QuotaError, match="holds 1.0 MB of its 1.0 MB"):
        ws.check_model_slot()


def test_an_upload_over_the_quota_is_refused_from_the_zip_directory(shared, tmp_path):
    ws = open_workspace(identify(None, "uploader"))
    small, large = tmp_path / "small.zip", tmp_path / "large.zip"
    with zipfile.ZipFile(small, "w") as bundle:
        bundle.writestr("data/good/a.txt", "x" * 1000)
    with zipfile.ZipFile(large, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("data/good/a.txt", "x" * 1_200_000)  # compresses to a few KB
    assert large.stat().st_size < 20_000
    ws.check_upload(small)
    with pytest.raises(QuotaError, match="unpacks to 1.1 MB.*Nothing was unpacked"):
        ws.check_upload(large)
    assert not ws.root.exists()  # the check writes nothing
    not_a_zip = tmp_path / "junk.zip"
    not_a_zip.write_bytes(b"junk")
    ws.check_upload(not_a_zip)  # the extraction reports what is wrong with it


def test_expired_anonymous_workspaces_go_accounts_stay(shared):
    old, fresh, account = (open_workspace(identify(*who)) for who in ((None, "old"), (None, "fresh"), ("dan", "x")))
    old.touch()
    assert not old.root.exists()  # a visit alone writes nothing
    for ws in (old, fresh, account):
        fake_model(ws.models_dir, "m")
        ws.touch()
    past = time.time() - 7200
    for ws in (old, account):
        os.utime(ws.root / ".last-used", (past, past))
    removed = expire_workspaces(max_age_s=3600)
    assert removed == [old.root] and not old.root.exists()
    assert fresh.model_ids() == ["m"] and account.model_ids() == ["m"]
    assert expire_workspaces(max_age_s=3600) == []


def test_training_queue_one_at_a_time_one_per_visitor():
    queue = TrainingQueue()
    order, seen_ahead = [], []
    first_running, release_first = threading.Event(), threading.Event()

    def first():
        with queue.place("a") as ticket:
            ticket.wait()
            order.append("a")
            first_running.set()
            release_first.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_running.wait(10)
    with pytest.raises(QuotaError, match="already have a training"):
        with queue.place("a"):
            pass

    def second():
        with queue.place("b") as ticket:
            ticket.wait(on_wait=seen_ahead.append, poll_s=0.05)
            order.append("b")

    waiter = threading.Thread(target=second)
    waiter.start()
    deadline = time.time() + 10
    while not seen_ahead and time.time() < deadline:
        time.sleep(0.01)
    assert seen_ahead and seen_ahead[0] == 1 and order == ["a"]
    release_first.set()
    thread.join(10)
    waiter.join(10)
    assert order == ["a", "b"]
    with queue.place("a") as ticket:  # places are freed
        ticket.wait()


def test_a_cancelled_wait_frees_the_place():
    queue = TrainingQueue()

    class Stop(Exception):
        pass

    def stop(_ahead):
        raise Stop

    with queue.place("runner") as running:
        running.wait()
        with pytest.raises(Stop):
            with queue.place("quitter") as ticket:
                ticket.wait(on_wait=stop)
        assert queue.ahead_of("quitter") == 0
    with queue.place("quitter") as ticket:
        ticket.wait()


def test_a_model_id_resolves_as_the_whole_catalogue_would_without_building_it(shared, monkeypatch):
    """Issue 17: resolve_model takes a plain id without parsing every stored model's iadbe.json; for every
    kind of id (manifest, own, server's, shadowed, partial, broken, unknown, label) the answer is the
    catalogue loop's, also when only the visitor's own models count."""
    import re

    import gradio as gr

    from iadbe.app import common
    from iadbe.manifest import Manifest, save_manifest
    from test_manifest import make_entry

    manifest = shared / "manifest.yaml"
    save_manifest(manifest, Manifest(models=[make_entry("hub-model")]))
    monkeypatch.setattr(constants, "MANIFEST_PATH", manifest)
    mine = open_workspace(identify(None, "A"))
    for name in ("both", "only-mine"):
        fake_model(mine.models_dir, name)
    for name in ("both", "only-server", "hub-model"):
        fake_model(constants.MODEL_STORE, name)
    broken = fake_model(constants.MODEL_STORE, "broken")
    (broken / "iadbe.json").write_text("{not json")
    fake_model(constants.MODEL_STORE, ".partial-123-half")
    label = common.entry_label(next(e for e in common.visible_catalog(mine) if e.id == "only-server"))

    def answer(text, own_only):
        try:
            return common.resolve_model(text, mine, own_only=own_only)
        except gr.Error as error:
            return f"error: {error}"

    cases = ["hub-model", "both", "only-mine", "only-server", "broken", ".partial-123-half", "unknown", label]
    fast = {(text, own): answer(text, own) for text in cases for own in (False, True)}
    with monkeypatch.context() as patched:  # a known plain id never builds the catalogue
        patched.setattr(common, "visible_catalog", lambda *_: pytest.fail("the catalogue was built"))
        assert [common.resolve_model(t, mine) for t in ("hub-model", "only-server")] == [
            fast[("hub-model", False)], fast[("only-server", False)]]
    monkeypatch.setattr(common, "PLAIN_ID", re.compile(r"(?!)"))  # the catalogue loop alone
    slow = {(text, own): answer(text, own) for text in cases for own in (False, True)}
    assert fast == slow
    assert fast[("both", False)] == str(mine.models_dir / "both")  # the visitor's own model first
    assert fast[("hub-model", False)] == "hub-model" and fast[("only-server", False)].endswith("only-server")
    assert fast[("only-server", True)].startswith("error") and fast[("broken", False)].startswith("error")
