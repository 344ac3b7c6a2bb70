"""IADBE changes no library setting for the whole process (issue 16): a Space serves many people in one."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

LITE0 = "tf_efficientnet_lite0"


def test_a_rebuild_on_one_thread_leaves_another_threads_backbone_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a stored STFPM while a training builds its backbone: the training still gets ImageNet weights."""
    import safetensors.torch
    from anomalib.models.image.stfpm import lightning_model

    from iadbe.backbones import ensure_lite_weights
    from iadbe.models import create_detector, resolve_config

    pretrained = safetensors.torch.load_file(ensure_lite_weights(LITE0))
    inside, trained = threading.Event(), threading.Event()
    original = lightning_model.STFPMModel

    def held_open(*args, **kwargs):  # the rebuild pauses in the middle while the training builds its backbone
        inside.set()
        assert trained.wait(120)
        return original(*args, **kwargs)

    monkeypatch.setattr(lightning_model, "STFPMModel", held_open)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            create_detector(resolve_config("stfpm", LITE0, 64), pre_trained=False)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            inside.set()

    loader = threading.Thread(target=load)
    loader.start()
    assert inside.wait(120)
    try:
        training = create_detector(resolve_config("padim", LITE0, 64), pre_trained=True)
    finally:
        trained.set()
        loader.join(120)
    assert not errors, errors
    extractor = training.model.feature_extractor.feature_extractor
    stem = extractor.conv_stem.weight
    assert torch.equal(stem, pretrained["conv_stem.weight"])
    block = dict(extractor.named_parameters())["blocks.1.0.conv_pw.weight"]
    assert torch.equal(block, pretrained["blocks.1.0.conv_pw.weight"])
