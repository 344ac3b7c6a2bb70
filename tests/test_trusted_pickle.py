"""Pickled weights: refused by default, loaded from a local directory only when the user explicitly trusts
it (library and CLI), never for a download, and never by a path that did not ask (export)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from test_app import PROJECT, make_parts_dataset


@pytest.fixture(scope="module")
def pickled_copy(tmp_path_factory):
    import torch

    from iadbe import store
    from iadbe.training import train

    base = tmp_path_factory.mktemp("pickle")
    data = make_parts_dataset(base / "parts")
    original = train("padim", "folder", data, image_size=64, out=base / "model").model_dir
    copy = base / "pickled"
    shutil.copytree(original, copy)
    state = store.load_weights(copy / store.WEIGHTS_FILE)
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, copy / "weights.ckpt")  # Lightning style
    (copy / store.WEIGHTS_FILE).unlink()
    meta = json.loads((copy / "iadbe.json").read_text())
    meta["files"].pop(store.WEIGHTS_FILE)
    (copy / "iadbe.json").write_text(json.dumps(meta))
    image = next((data / "defect").glob("*.png"))
    return original, copy, image


def test_pickled_weights_are_refused_without_explicit_trust(pickled_copy):
    from iadbe.errors import UnsafeCheckpointError
    from iadbe.inference import load_model

    _, copy, _ = pickled_copy
    with pytest.raises(UnsafeCheckpointError, match="weights.ckpt.*trust_local_pickle=True"):
        load_model(copy, backend="torch")


def test_a_trusted_local_pickle_predicts_like_the_safetensors_original(pickled_copy):
    from iadbe.inference import load_model

    original, copy, image = pickled_copy
    expected = load_model(original, backend="torch").predict(image)[0]
    got = load_model(copy, backend="torch", trust_local_pickle=True).predict(image)[0]
    assert got.score == pytest.approx(expected.score, abs=1e-6)


def test_trust_never_applies_to_downloads_or_to_export(pickled_copy):
    from iadbe.errors import SettingsError, UnsafeCheckpointError
    from iadbe.graph import rebuild_graph
    from iadbe.inference.loading import load_model
    from iadbe.models import DetectorConfig

    _, copy, _ = pickled_copy
    with pytest.raises(SettingsError, match="local model directory only"):
        load_model("hf://someone/models/padim@" + "0" * 40, trust_local_pickle=True)
    config = DetectorConfig.from_dict(json.loads((copy / "iadbe.json").read_text())["detector"])
    with pytest.raises(UnsafeCheckpointError):
        rebuild_graph(copy, config)  # e.g. `iadbe export` on this folder: no consent given


def test_cli_predict_needs_the_flag(pickled_copy, tmp_path):
    _, copy, image = pickled_copy
    base = [sys.executable, "-m", "iadbe", "predict", "--model", str(copy), str(image), "--backend", "torch",
            "--out", str(tmp_path / "out")]
    refused = subprocess.run(base, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--trust-local-pickle" in refused.stderr
    trusted = subprocess.run(base + ["--trust-local-pickle"], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert (tmp_path / "out" / "predictions.csv").is_file()
