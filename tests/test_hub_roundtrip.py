"""Round trip through the Hub-compatible test server with the real huggingface_hub client:
train a small real model, push it (one commit), drop the local copy and the cache, load it by
manifest id and get the same predictions; then offline from the cache."""

from __future__ import annotations

import shutil

import numpy as np
from hub_server import refused_endpoint
import pytest
from PIL import Image


def _texture_dataset(root, seed=0, size=96):
    rng = np.random.default_rng(seed)
    for folder in ("good", "defect", "masks"):
        (root / folder).mkdir(parents=True)
    base = rng.integers(90, 160, (size, size, 3)).astype(np.uint8)
    for index in range(14):
        noise = rng.integers(-12, 12, base.shape)
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(root / "good" / f"{index:03d}.png")
    for index in range(4):
        image = np.clip(base + rng.integers(-12, 12, base.shape), 0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(10, size - 30, 2)
        image[y : y + 16, x : x + 16] = 250
        mask[y : y + 16, x : x + 16] = 255
        Image.fromarray(image).save(root / "defect" / f"{index:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from iadbe.training import train

    data = _texture_dataset(tmp_path_factory.mktemp("data") / "parts")
    result = train("padim", "folder", data, backbone="tf_efficientnet_lite0", image_size=96,
                   out=tmp_path_factory.mktemp("models") / "padim-parts")
    return result.model_dir, sorted((data / "defect").glob("*.png")) + sorted((data / "good").glob("*.png"))[:2]


def test_push_then_load_by_manifest_id_gives_the_same_predictions(hub_env, hub_server, small_model, tmp_path,
                                                                   monkeypatch):
    from iadbe import constants, hub
    from iadbe.inference import CACHE, load_model

    model_dir, images = small_model
    local = [p.score for p in load_model(model_dir, backend="openvino").predict(images)]
    manifest = tmp_path / "models_manifest.yaml"
    result = hub.push_model(model_dir, hub_env.repo_id("padim-parts"), path_in_repo="padim/parts",
                            manifest_path=manifest)
    pushed = [c for c in hub_server.commits(result.repo_id) if c.title != "initial commit"]
    assert [c.oid for c in pushed] == [result.revision]  # everything in ONE commit
    assert {"iadbe.json", "weights.safetensors", "openvino/model.xml", "openvino/model.bin", "README.md"} <= {
        path.split("padim/parts/")[-1] for path in pushed[0].files}
    entry_id = result.manifest_entry.id

    # drop the local store copy and the in-memory cache: the model must come from the Hub
    moved = tmp_path / "gone"
    shutil.move(str(model_dir), moved)
    CACHE.clear()
    monkeypatch.setattr(constants, "MANIFEST_PATH", manifest)
    try:
        remote = load_model(entry_id, backend="openvino").predict(images)
        assert [p.score for p in remote] == pytest.approx(local, abs=1e-6)
        # offline: from the cache, quickly, same numbers
        CACHE.clear()
        hub_env.point_to(refused_endpoint())  # the network is gone too
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        offline = load_model(entry_id, backend="openvino").predict(images)
        assert [p.score for p in offline] == pytest.approx(local, abs=1e-6)
    finally:
        shutil.move(str(moved), model_dir)
