"""IADBE's generalised Reverse Distillation, FastFlow, U-Flow and CFA (``iadbe/models/generalized``).

Each trains 1 epoch with EfficientNet-Lite0 (a backbone anomalib 2.7's classes refuse) on the tiny
synthetic folder dataset of ``test_model_smoke``, exports, and must give the torch graph's numbers
in OpenVINO at batch 1 and batch 3. The architecture checks build models without weights: for
resnet18 the stage-derived RD bottleneck and decoder must have exactly anomalib's tensor shapes.
Timings (2 shared CPU cores) are in the comments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

try:  # tests/ as a package or as a plain folder on sys.path
    from .test_model_smoke import assert_openvino_matches_torch, dataset, home  # noqa: F401 (fixtures)
except ImportError:
    from test_model_smoke import assert_openvino_matches_torch, dataset, home  # noqa: F401 (fixtures)

IMAGE_SIZE = 64
#: wall seconds (train + calibrate + test + export + both backends) at load ~4 on 2 cores; the whole
#: file took 51 s then, and 250 s at load ~10 (other jobs). The first case also loads the libraries.
MODELS = [
    pytest.param("reverse_distillation", id="reverse_distillation"),  # 16
    pytest.param("fastflow", id="fastflow"),  # 16
    pytest.param("uflow", id="uflow"),  # 8
    pytest.param("cfa", id="cfa"),  # 7
]


@pytest.mark.parametrize("model", MODELS)
def test_generalized_trains_exports_and_openvino_matches_torch(model: str, dataset: Path, tmp_path: Path) -> None:
    from iadbe.training import train

    result = train(model, "folder", dataset, backbone="tf_efficientnet_lite0", image_size=IMAGE_SIZE, max_epochs=1,
                   max_train_images=8, batch_size=8, out=tmp_path / model, seed=0)
    assert result.meta["detector"]["extra"]["implementation"] == "iadbe"
    assert result.meta["backbone"] == "tf_efficientnet_lite0"
    assert (result.model_dir / "openvino" / "model.xml").is_file()
    assert all(np.isfinite(value) for value in result.metrics.values())

    torch_model, images = assert_openvino_matches_torch(result.model_dir, dataset, IMAGE_SIZE, model,
                                                        exact_maps=True)
    # the stored model rebuilt in torch scores the first image alone as it did inside a batch of 3
    np.testing.assert_allclose(torch_model.backend.run(images[:1])[0], torch_model.backend.run(images)[0][:1],
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["reverse_distillation", "fastflow", "uflow", "cfa"])
def test_backbones_outside_anomalibs_lists_use_the_generalized_class(name: str) -> None:
    from iadbe.models import check_availability, get_spec, resolve_config
    from iadbe.models.factory import detector_class

    spec = get_spec(name)
    config = resolve_config(name, backbone="tf_efficientnet_lite2", image_size=128)
    assert config.extra["implementation"] == "iadbe"
    assert detector_class(spec, "iadbe").__module__ == f"iadbe.models.generalized.{name}"
    availability = check_availability(spec, "tf_efficientnet_lite2")
    assert availability.runs_here and "generalised" in availability.reason


@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite0", "tf_efficientnet_lite2", "resnet18"])
def test_reverse_distillation_decoder_reconstructs_every_encoder_stage(backbone: str) -> None:
    import torch

    from iadbe.models.generalized.reverse_distillation import StageReverseDistillationModel

    model = StageReverseDistillationModel(backbone, (96, 64), ["layer1", "layer2", "layer3"], "add", pre_trained=False)
    model.train()
    with torch.no_grad():
        encoder, decoder = model(torch.rand(2, 3, 96, 64))
    assert [f.shape for f in decoder] == [f.shape for f in encoder]
    assert [f.shape[-2:] for f in encoder] == [(24, 16), (12, 8), (6, 4)]


def test_reverse_distillation_on_resnet18_has_anomalibs_architecture() -> None:
    """For resnet18 the stage-derived OCBE and decoder are anomalib's, tensor for tensor."""
    from anomalib.models.components.backbone import get_decoder
    from anomalib.models.image.reverse_distillation.components import get_bottleneck_layer

    from iadbe.models.generalized.reverse_distillation import StageBottleneck, StageDecoder

    def shapes(module) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
        return {key: tuple(value.shape) for key, value in module.state_dict().items()}

    ours_bottleneck = StageBottleneck([64, 128, 256])
    theirs_bottleneck = shapes(get_bottleneck_layer("resnet18"))
    theirs_bottleneck = {k: v for k, v in theirs_bottleneck.items() if not k.startswith(("conv4", "bn4"))}  # unused
    assert shapes(ours_bottleneck) == theirs_bottleneck
    assert shapes(StageDecoder([64, 128, 256], ours_bottleneck.out_channels)) == shapes(get_decoder("resnet18"))


@pytest.mark.parametrize("name", ["fastflow", "uflow", "cfa"])
def test_flows_and_descriptor_are_sized_from_feature_info(name: str) -> None:
    import torch

    from iadbe.models import create_detector, resolve_config

    module = create_detector(resolve_config(name, backbone="tf_efficientnet_lite2", image_size=128), pre_trained=False)
    model = module.model
    if name in {"fastflow", "uflow"}:  # OpenVINO drops Softplus' beta: the blocks must use the rewritten one
        from anomalib.models.components.flow import AllInOneBlock

        from iadbe.models.graphs import _softplus_beta_half_times_tenth

        blocks = [m for m in model.modules() if isinstance(m, AllInOneBlock)]
        assert blocks and all(b.global_scale_activation is _softplus_beta_half_times_tenth for b in blocks)
    if name == "fastflow":  # lite2 stages: 24 @ 4, 48 @ 8, 120 @ 16
        assert [tuple(norm.normalized_shape) for norm in model.norms] == [(24, 32, 32), (48, 16, 16), (120, 8, 8)]
    elif name == "uflow":
        assert list(model.feature_extractor.channels) == [24, 48, 120]
        assert list(model.feature_extractor.scale_factors) == [4, 8, 16]
        model.train()
        with torch.no_grad():
            latents, _ = model(torch.rand(1, 3, 128, 128))
        assert [z.shape[-1] for z in latents] == [32, 16, 8]
    else:
        assert model.descriptor.layer.conv2d.in_channels == 24 + 48 + 120 + 2  # + the two coordinate channels


def test_strides_that_do_not_double_are_refused() -> None:
    from iadbe.errors import SettingsError
    from iadbe.models.generalized.stages import Stage, require_halving_strides

    require_halving_strides([Stage("a", 8, 4), Stage("b", 16, 8), Stage("c", 32, 16)], "X")
    with pytest.raises(SettingsError, match="strides double"):
        require_halving_strides([Stage("a", 8, 4), Stage("b", 16, 16)], "X")


@pytest.mark.parametrize("mode", ["add", "multiply"])
def test_reverse_distillation_exportable_map_equals_anomalibs(mode: str) -> None:
    """The map with the cosine written out (OpenVINO has no aten::cosine_similarity) is anomalib's."""
    import torch
    from anomalib.models.image.reverse_distillation.anomaly_map import AnomalyMapGenerator

    from iadbe.models.generalized.reverse_distillation import ExportableAnomalyMapGenerator

    torch.manual_seed(0)
    student = [torch.randn(3, c, s, s) for c, s in ((24, 16), (40, 8), (112, 4))]
    teacher = [torch.randn_like(feature) for feature in student]
    expected = AnomalyMapGenerator((64, 64), mode=mode)(student, teacher)
    torch.testing.assert_close(ExportableAnomalyMapGenerator((64, 64), mode=mode)(student, teacher), expected,
                               rtol=1e-5, atol=1e-5)
