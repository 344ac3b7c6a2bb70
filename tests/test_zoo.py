"""``iadbe zoo`` end to end against the Hub test server: train every (model, category), push each in one
commit, write pinned manifest entries; an interrupted run resumes without training again; the zoo's models
load by manifest id. Also: a Hub dataset (``hf://datasets/...``) as a training root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_app import PROJECT, make_parts_dataset


@pytest.fixture(scope="module")
def two_categories(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zoo_data") / "parts"
    for seed, category in enumerate(("alpha", "beta")):
        make_parts_dataset(root / category, seed=seed, size=64)
    return root


def test_zoo_pushes_each_model_resumes_and_loads(hub_env, hub_server, two_categories, tmp_path, monkeypatch):
    from iadbe import constants
    from iadbe.inference import CACHE, load_model
    from iadbe.manifest import load_manifest
    from iadbe.zoo import build_zoo

    repo_id = hub_env.repo_id("zoo")
    manifest, work = tmp_path / "models_manifest.yaml", tmp_path / "zoo"
    messages: list[str] = []

    def fail_the_second_push(message: str) -> None:
        messages.append(message)
        if message == "padim/beta: training":
            hub_server.fail_next_commit()  # the network goes away after beta trained

    kwargs = dict(dataset="folder", root=two_categories, models=["padim"], repo_id=repo_id, image_size=64,
                  manifest_path=manifest, work_dir=work)
    first = build_zoo(**kwargs, progress=fail_the_second_push)
    assert [(i.category, i.status) for i in first] == [("alpha", "pushed"), ("beta", "failed")], [i.message for i in first]
    assert [e.id for e in load_manifest(manifest).models] == [first[0].entry_id]  # nothing for the failed one
    beta_weights = work / "padim__beta" / "weights.safetensors"
    trained_at = beta_weights.stat().st_mtime_ns

    second = build_zoo(**kwargs, progress=messages.append)
    assert [(i.category, i.status) for i in second] == [("alpha", "skipped"), ("beta", "pushed")]
    assert "trained earlier" in second[1].message and beta_weights.stat().st_mtime_ns == trained_at
    assert "padim/beta: training" not in messages[len(messages) - 2:]

    entries = {e.category: e for e in load_manifest(manifest).models}
    assert set(entries) == {"alpha", "beta"}
    pushed = [c for c in hub_server.commits(repo_id) if c.title != "initial commit"]
    assert len(pushed) == 2  # one commit per model, none for the failed attempt
    for category, entry in entries.items():
        assert re.fullmatch(r"[0-9a-f]{40}", entry.revision) and entry.path_in_repo == f"padim/{category}"
        assert entry.revision in {c.oid for c in pushed}
        assert {"iadbe.json", "weights.safetensors", "openvino/model.xml", "README.md"} <= set(entry.files)

    CACHE.clear()
    monkeypatch.setattr(constants, "MANIFEST_PATH", manifest)
    image = next((two_categories / "beta" / "defect").glob("*.png"))
    remote = load_model(entries["beta"].id, backend="openvino").predict(image)[0]
    local = load_model(work / "padim__beta", backend="openvino").predict(image)[0]
    assert remote.score == pytest.approx(local.score, abs=1e-6)


def test_zoo_without_a_token_trains_nothing(hub_env, two_categories, tmp_path):
    from iadbe.hub import HubError
    from iadbe.zoo import build_zoo

    hub_env.anonymous()
    with pytest.raises(HubError, match="token"):
        build_zoo(dataset="folder", root=two_categories, models=["padim"], repo_id=hub_env.repo_id("zoo"),
                  manifest_path=tmp_path / "m.yaml", work_dir=tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()


def test_zoo_cli_reports_each_run(hub_env, two_categories, tmp_path):
    cmd = [sys.executable, "-m", "iadbe", "zoo", "--dataset", "folder", "--root", str(two_categories),
           "--categories", "alpha", "--models", "padim", "--image-size", "64", "--repo-id", hub_env.repo_id("zoo"),
           "--manifest", str(tmp_path / "m.yaml"), "--work-dir", str(tmp_path / "zoo")]
    done = subprocess.run(cmd, cwd=PROJECT, env=hub_env.subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 pushed, 0 skipped, 0 failed" in done.stdout
    assert hub_env.token not in done.stdout + done.stderr


def test_a_hub_dataset_is_a_training_root(hub_env, hub_server, two_categories):
    from iadbe.data import list_categories, load_dataset

    repo_id = hub_env.repo_id("parts-data")
    files = {p.relative_to(two_categories).as_posix(): p.read_bytes()
             for p in two_categories.rglob("*.png")}
    hub_server.seed(repo_id, files, repo_type="dataset")
    ref = f"hf://datasets/{repo_id}"
    assert list_categories("folder", ref) == ["alpha", "beta"]
    splits = load_dataset("folder", ref, "beta")
    local = load_dataset("folder", two_categories, "beta")
    assert splits.category == "beta"
    assert [s.image.name for s in splits.test] == [s.image.name for s in local.test]
