"""FastFlow (Yu et al., 2021) on the stride 4/8/16 stages of any timm CNN.

anomalib 2.7 accepts resnet18 / wide_resnet50_2 (and two vision transformers) by name. Its CNN path
is general: per stage a LayerNorm over (C, H, W) and a 2D flow of ``flow_steps`` ``AllInOneBlock``s
(3x3 and 1x1 subnets alternating). Here the stages are the backbone's stride 4, 8 and 16 stages
from its ``feature_info`` (ResNet's layer1..layer3, the ones anomalib uses), sized at the chosen
input size. Loss, anomaly map and training recipe (Adam, lr 1e-3, weight decay 1e-5) are anomalib's.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from anomalib.data import InferenceBatch
from anomalib.models.components import TimmFeatureExtractor
from anomalib.models.image.fastflow import Fastflow
from anomalib.models.image.fastflow.anomaly_map import AnomalyMapGenerator
from anomalib.models.image.fastflow.loss import FastflowLoss
from anomalib.models.image.fastflow.torch_model import create_fast_flow_block
from torch import nn

from iadbe.models.generalized.stages import (
    RESNET_STAGES_1_TO_3,
    backbone_stages,
    init_anomalib_module,
    use_openvino_safe_softplus,
)


class StageFastflowModel(nn.Module):
    """Torch model: frozen timm features, LayerNorm and one 2D flow per stage."""

    def __init__(
        self,
        input_size: tuple[int, int],
        backbone: str,
        layers: Sequence[str] = RESNET_STAGES_1_TO_3,
        pre_trained: bool = True,
        flow_steps: int = 8,
        conv3x3_only: bool = False,
        hidden_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        self.input_size = tuple(input_size)
        stages = backbone_stages(backbone, layers)
        self.feature_extractor = TimmFeatureExtractor(
            backbone=backbone, layers=[stage.name for stage in stages], pre_trained=pre_trained, requires_grad=False,
        )
        self.norms = nn.ModuleList(
            nn.LayerNorm([stage.channels, *stage.size(input_size)], elementwise_affine=True) for stage in stages
        )
        self.fast_flow_blocks = nn.ModuleList(
            create_fast_flow_block(
                input_dimensions=[stage.channels, *stage.size(input_size)], conv3x3_only=conv3x3_only,
                hidden_ratio=hidden_ratio, flow_steps=flow_steps,
            )
            for stage in stages
        )
        use_openvino_safe_softplus(self.fast_flow_blocks)
        self.anomaly_map_generator = AnomalyMapGenerator(input_size=self.input_size)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]] | InferenceBatch:
        self.feature_extractor.eval()
        features = self.feature_extractor(images).values()
        hidden_variables: list[torch.Tensor] = []
        log_jacobians: list[torch.Tensor] = []
        for norm, flow, feature in zip(self.norms, self.fast_flow_blocks, features, strict=True):
            hidden_variable, log_jacobian = flow(norm(feature))
            hidden_variables.append(hidden_variable)
            log_jacobians.append(log_jacobian)
        if self.training:
            return hidden_variables, log_jacobians
        anomaly_map = self.anomaly_map_generator(hidden_variables)
        return InferenceBatch(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)


class GeneralizedFastflow(Fastflow):
    """anomalib's ``Fastflow`` training module around :class:`StageFastflowModel`."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        layers: Sequence[str] = RESNET_STAGES_1_TO_3,
        pre_trained: bool = True,
        flow_steps: int = 8,
        conv3x3_only: bool = False,
        hidden_ratio: float = 1.0,
        pre_processor: Any = True,
        post_processor: Any = True,
        evaluator: Any = True,
        visualizer: Any = True,
    ) -> None:
        # Fastflow.__init__ would build anomalib's name-checked model; its training step, optimiser
        # and trainer arguments are what we reuse.
        init_anomalib_module(self, pre_processor, post_processor, evaluator, visualizer, needs_input_size="FastFlow")
        self.backbone = backbone
        self.layers = list(layers)
        self.pre_trained = pre_trained
        self.flow_steps = flow_steps
        self.conv3x3_only = conv3x3_only
        self.hidden_ratio = hidden_ratio
        self.model = StageFastflowModel(
            input_size=tuple(self.input_size), backbone=backbone, layers=self.layers, pre_trained=pre_trained,
            flow_steps=flow_steps, conv3x3_only=conv3x3_only, hidden_ratio=hidden_ratio,
        )
        self.loss = FastflowLoss()
