"""``unet_lite0``, the supervised segmentation baseline: trained on a few real labelled defects (MVTec 3D-AD
tire), stored, exported, and the same in torch and OpenVINO; its pretrained encoder is timm's Lite0."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

TIRE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mvtec_3d" / "tire"
TIRE = TIRE if TIRE.is_dir() else Path("/work/shared/data/mvtec_3d/tire")
needs_tire = pytest.mark.skipif(not TIRE.is_dir(), reason=f"real data not found at {TIRE} (../shared/data)")


def test_bce_dice_loss_falls_as_the_prediction_fits() -> None:
    from iadbe.models.unet import bce_dice_loss

    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:5, 2:5] = 1
    good, bad = (target * 2 - 1) * 6, -(target * 2 - 1) * 6
    assert bce_dice_loss(good, target) < 0.05 < 1.0 < bce_dice_loss(bad, target)
    assert torch.isclose(bce_dice_loss(good, torch.zeros_like(target)),
                         torch.nn.functional.binary_cross_entropy_with_logits(good, torch.zeros_like(target)))


def test_the_encoder_starts_from_timm_lite0_imagenet_weights() -> None:
    import timm

    from iadbe import backbones
    from iadbe.models import create_detector, resolve_config

    backbones.require_backbone("tf_efficientnet_lite0")
    config = resolve_config("unet_lite0", image_size=64)
    assert config.mean == (0.5, 0.5, 0.5)  # Lite0's own input statistics
    encoder = create_detector(config, pre_trained=True).model.net.encoder.model.state_dict()
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=True).state_dict()
    shared = [key for key in encoder if key in reference]
    assert len(shared) > 100 and all(torch.equal(encoder[key], reference[key]) for key in shared)
    blank = create_detector(config, pre_trained=False).model.net.encoder.model.state_dict()
    assert not torch.equal(blank["conv_stem.weight"], reference["conv_stem.weight"])


def test_unet_refuses_an_encoder_without_offline_weights() -> None:
    from iadbe.errors import SettingsError
    from iadbe.models import resolve_config

    with pytest.raises(SettingsError, match="encoder must be one of"):
        resolve_config("unet_lite0", backbone="resnet18", image_size=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from iadbe import constants
    from iadbe.data import load_dataset
    from iadbe.training import train

    if not TIRE.is_dir():
        pytest.skip(f"real data not found at {TIRE}")
    home = tmp_path_factory.mktemp("unet_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "IADBE_HOME", home)
        splits = load_dataset("mvtec3d", TIRE, seed=0)
        defects = [s for s in splits.test if s.is_anomalous][::9]  # 12 defects of every type
        goods = [s for s in splits.test if not s.is_anomalous]
        fold = replace(splits, train=splits.train[:6] + defects[:6],
                       val=[s for s in splits.val if not s.is_anomalous][:4] + defects[6:8],
                       test=goods[:4] + defects[8:12])
        yield train("unet_lite0", "mvtec3d", TIRE, image_size=128, max_epochs=2, splits=fold, seed=0,
                    out=tmp_path_factory.mktemp("unet_models") / "unet"), fold


@needs_tire
def test_unet_trains_on_labelled_defects_and_stores_its_fit(trained: Any) -> None:
    result, fold = trained
    fit = result.meta["fit"]
    assert result.meta["train_defects"] == 6 and fit["defects"] == 6 and fit["normals"] == 6
    assert fit["steps"] == 2 * 2 and result.meta["epochs_trained"] == 2.0 and not fit["stopped_by_time_cap"]
    assert result.meta["detector"]["extra"] == {"implementation": "iadbe"}
    assert {"image_F1", "image_F1_oracle", "pixel_AUROC", "pixel_F1"} <= set(result.metrics)
    maps = result.test_outputs.maps
    assert maps.shape == (len(fold.test), 128, 128) and 0 <= maps.min() and maps.max() <= 1  # sigmoid


@needs_tire
def test_unet_gives_the_same_maps_in_torch_and_openvino(trained: Any) -> None:
    from iadbe.inference import load_model

    result, fold = trained
    images = [s.image for s in fold.test[2:6]]
    by_backend = {backend: load_model(result.model_dir, backend=backend).predict(images, batch_size=3)
                  for backend in ("torch", "openvino")}
    for ours, theirs in zip(by_backend["torch"], by_backend["openvino"]):
        np.testing.assert_allclose(theirs.raw_score, ours.raw_score, atol=1e-4)
        np.testing.assert_allclose(theirs.anomaly_map, ours.anomaly_map, atol=1e-3)
        assert ours.anomaly_map.shape == ours.image.shape[:2]
    scores = [p.raw_score for p in by_backend["torch"]]
    stored = result.test_outputs.scores[2:6]
    np.testing.assert_allclose(scores, stored, atol=1e-4)  # the reloaded model is the trained one
