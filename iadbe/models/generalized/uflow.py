"""U-Flow (Tailanian et al., 2023) with its U-shaped multi-scale flow on the stages of any timm CNN.

anomalib 2.7 builds U-Flow on two CaiT scales (``mcait``, strides 16 and 32) or on resnet18 /
wide_resnet50_2 by name, and forces a 448x448 input. Its flow graph is general: one flow stage per
scale, coarsest first; after each, half the channels leave as that scale's latent output and the rest
are upsampled (invertible pixel shuffle, channels / 4, size x 2) and concatenated with the next finer
scale. Here the scales are the backbone's stride 4, 8 and 16 stages (anomalib's LayerNorm CNN
extractor on ResNet's layer1..layer3, mapped by stride), at the chosen input size. The flow blocks,
loss, anomaly map and training recipe (Adam 1e-3, weight decay 1e-5, linear lr decay) are anomalib's.
"""

from __future__ import annotations

from typing import Any, Sequence

from anomalib.models.components import AnomalibModule, TimmFeatureExtractor
from anomalib.models.image.uflow import Uflow
from anomalib.models.image.uflow.anomaly_map import AnomalyMapGenerator
from anomalib.models.image.uflow.feature_extraction import LayerNormFeatureExtractor
from anomalib.models.image.uflow.loss import UFlowLoss
from anomalib.models.image.uflow.torch_model import UflowModel
from anomalib.pre_processing import PreProcessor
from torch import nn

from iadbe.models.generalized.stages import (
    RESNET_STAGES_1_TO_3,
    backbone_stages,
    init_anomalib_module,
    require_halving_strides,
    use_openvino_safe_softplus,
)


class StageUflowModel(UflowModel):
    """anomalib's ``UflowModel`` (flow graph, forward, encode) on a timm CNN's LayerNorm'd stages."""

    def __init__(
        self,
        input_size: tuple[int, int],
        backbone: str,
        layers: Sequence[str] = RESNET_STAGES_1_TO_3,
        pre_trained: bool = True,
        flow_steps: int = 4,
        affine_clamp: float = 2.0,
        affine_subnet_channels_ratio: float = 1.0,
        permute_soft: bool = False,
    ) -> None:
        # UflowModel.__init__ only accepts its three extractor names; the rest of it is reused.
        nn.Module.__init__(self)
        stages = backbone_stages(backbone, layers)
        require_halving_strides(stages, "U-Flow")
        self.input_size = tuple(input_size)
        self.affine_clamp = affine_clamp
        self.affine_subnet_channels_ratio = affine_subnet_channels_ratio
        self.permute_soft = permute_soft
        self.feature_extractor = _layer_norm_extractor(backbone, self.input_size, [s.name for s in stages], pre_trained)
        self.flow = self.build_flow(flow_steps)
        use_openvino_safe_softplus(self.flow)
        self.anomaly_map_generator = AnomalyMapGenerator(self.input_size)


class _LayerNormExtractor(LayerNormFeatureExtractor):
    """anomalib's extractor, which always asks timm for pretrained weights, with ``pre_trained`` honoured."""

    def __init__(self, backbone: str, input_size: tuple[int, int], layers: tuple[str, ...], pre_trained: bool) -> None:
        TimmFeatureExtractor.__init__(self, backbone, layers, pre_trained=pre_trained, requires_grad=False)
        # the rest as LayerNormFeatureExtractor.__init__ (anomalib 2.7)
        self.channels = self.feature_extractor.feature_info.channels()
        self.scale_factors = self.feature_extractor.feature_info.reduction()
        self.scales = range(len(self.scale_factors))
        self.feature_normalizations = nn.ModuleList(
            nn.LayerNorm([channels, int(input_size[0] / scale), int(input_size[1] / scale)], elementwise_affine=True)
            for channels, scale in zip(self.channels, self.scale_factors, strict=True)
        )
        for param in self.feature_extractor.parameters():
            param.requires_grad = False


def _layer_norm_extractor(backbone: str, input_size: tuple[int, int], layers: list[str],
                          pre_trained: bool) -> LayerNormFeatureExtractor:
    return _LayerNormExtractor(backbone, input_size, tuple(layers), pre_trained).eval()


class GeneralizedUflow(Uflow):
    """anomalib's ``Uflow`` training module around :class:`StageUflowModel`, at the chosen input size."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        layers: Sequence[str] = RESNET_STAGES_1_TO_3,
        pre_trained: bool = True,
        flow_steps: int = 4,
        affine_clamp: float = 2.0,
        affine_subnet_channels_ratio: float = 1.0,
        permute_soft: bool = False,
        pre_processor: Any = True,
        post_processor: Any = True,
        evaluator: Any = True,
        visualizer: Any = True,
    ) -> None:
        # Uflow.__init__ would build anomalib's name-checked model; its training step, optimiser and
        # scheduler are what we reuse.
        init_anomalib_module(self, pre_processor, post_processor, evaluator, visualizer, needs_input_size="U-Flow")
        self.backbone = backbone
        self.layers = list(layers)
        self.flow_steps = flow_steps
        self.affine_clamp = affine_clamp
        self.affine_subnet_channels_ratio = affine_subnet_channels_ratio
        self.permute_soft = permute_soft
        self.model = StageUflowModel(
            input_size=tuple(self.input_size), backbone=backbone, layers=self.layers, pre_trained=pre_trained,
            flow_steps=flow_steps, affine_clamp=affine_clamp,
            affine_subnet_channels_ratio=affine_subnet_channels_ratio, permute_soft=permute_soft,
        )
        self.loss = UFlowLoss()

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize to ``image_size`` and ImageNet-normalise (anomalib's U-Flow forces 448x448)."""
        return AnomalibModule.configure_pre_processor(image_size)
