"""CS-Flow (Rudolph et al., 2022) on any timm CNN.

anomalib 2.7 hard-codes torchvision's pretrained EfficientNet-B5 (``features.6.8``: 304 channels,
stride 32) and a flow whose inputs are 304 channels wide. As in the paper, the three scales are an
image pyramid (full, 1/2 and 1/4 size) through *one* stride-32 stage, so each scale is half the
previous one: the cross-scale convolutions up/downsample by exactly 2 and the parallel coupling
layers need equal channels on all scales (backbone stages of different strides would not give
that without a non-invertible projection). Here that stage is the backbone's stride-32 stage from
its timm ``feature_info`` (ResNet's ``layer4``; EfficientNet-Lite's ``blocks.6``, 320 channels for
Lite0, 352 for Lite2; B5's layer is the stage before its last, which timm's Lite does not expose),
and the flow is sized from its channels and map sizes. Coupling layers, permutations, loss,
anomaly map and training recipe (Adam lr 2e-4, gradient clipping 1) are anomalib's.
EfficientNet-Lite2 is the nearest available relative of B5 (same family, no squeeze-excitation).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from anomalib.data import InferenceBatch
from anomalib.models.components import TimmFeatureExtractor
from anomalib.models.image.csflow import Csflow
from anomalib.models.image.csflow.anomaly_map import AnomalyMapGenerator, AnomalyMapMode
from anomalib.models.image.csflow.loss import CsFlowLoss
from anomalib.models.image.csflow.torch_model import CsFlowModel, ParallelGlowCouplingLayer, ParallelPermute
from FrEIA.framework import GraphINN, InputNode, Node, OutputNode
from torch import nn
from torch.nn import functional as F

from iadbe.errors import SettingsError
from iadbe.models.generalized.stages import Stage, backbone_stages, init_anomalib_module

#: The paper's scales: the image at full, half and quarter size.
N_SCALES = 3


def pyramid_feature_sizes(stage: Stage, input_size: Sequence[int]) -> list[tuple[int, int]]:
    """(height, width) of ``stage``'s map for each pyramid scale; each must be half the previous one."""
    sizes = [stage.size((-(-int(input_size[0]) // 2**scale), -(-int(input_size[1]) // 2**scale)))
             for scale in range(N_SCALES)]
    halving = all(2 * small[0] == big[0] and 2 * small[1] == big[1] for big, small in zip(sizes, sizes[1:]))
    if not halving or min(min(size) for size in sizes) < 1:
        step = stage.stride * 2 ** (N_SCALES - 1)
        raise SettingsError(
            f"CS-Flow needs feature maps that halve from scale to scale (stage {stage.name}, stride {stage.stride}); "
            f"got {sizes} for {tuple(input_size)} px: use an image size that is a multiple of {step} px"
        )
    return sizes


def cross_scale_flow(channels: int, sizes: Sequence[tuple[int, int]], n_coupling_blocks: int, clamp: float,
                     cross_conv_hidden_channels: int) -> GraphINN:
    """anomalib's ``CrossScaleFlow`` graph with ``channels`` inputs of ``sizes`` (it fixes 304 and input/32..128)."""
    kernel_sizes = [3] * (n_coupling_blocks - 1) + [5]
    nodes: list[Node] = [InputNode(channels, *size, name=f"input{index}") for index, size in enumerate(sizes)]
    outputs = [nodes[0].out0, nodes[1].out0, nodes[2].out0]
    for block in range(n_coupling_blocks):
        permute = Node(inputs=outputs, module_type=ParallelPermute, module_args={"seed": block},
                       name=f"permute_{block}")
        coupling = Node(
            inputs=[permute.out0, permute.out1, permute.out2], module_type=ParallelGlowCouplingLayer,
            module_args={"clamp": clamp, "subnet_args": {"channels_hidden": cross_conv_hidden_channels,
                                                         "kernel_size": kernel_sizes[block]}},
            name=f"fc1_{block}",
        )
        nodes += [permute, coupling]
        outputs = [coupling.out0, coupling.out1, coupling.out2]
    nodes += [OutputNode([output], name=f"output_end{index}") for index, output in enumerate(outputs)]
    return GraphINN(nodes)


class StageCsFlowModel(nn.Module):
    """Torch model: frozen timm stage on an image pyramid, a cross-scale flow over the three maps."""

    def __init__(
        self,
        input_size: tuple[int, int],
        backbone: str,
        layer: str = "layer4",
        pre_trained: bool = True,
        cross_conv_hidden_channels: int = 1024,
        n_coupling_blocks: int = 4,
        clamp: int = 3,
        num_channels: int = 3,
    ) -> None:
        super().__init__()
        self.input_size = tuple(input_size)
        self.input_dims = (num_channels, *self.input_size)
        (stage,) = backbone_stages(backbone, [layer])
        self.layer = stage.name
        sizes = pyramid_feature_sizes(stage, self.input_size)
        self.feature_extractor = TimmFeatureExtractor(
            backbone=backbone, layers=[stage.name], pre_trained=pre_trained, requires_grad=False,
        ).eval()
        graph = cross_scale_flow(stage.channels, sizes, n_coupling_blocks, clamp, cross_conv_hidden_channels)
        # FrEIA's GraphINN cannot be converted by OpenVINO (its TorchScript decoder fails on the graph's
        # ``module_list``); the graph is a chain of permutations and coupling layers, kept here in order.
        self.flow_blocks = nn.ModuleList(graph.module_list)
        self.anomaly_map_generator = AnomalyMapGenerator(input_dims=self.input_dims, mode=AnomalyMapMode.ALL)

    def pyramid_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The stage's features of the image at full, 1/2 and 1/4 size (nearest resize, as anomalib)."""
        features = []
        for scale in range(N_SCALES):
            size = (self.input_size[0] // 2**scale, self.input_size[1] // 2**scale)
            scaled = F.interpolate(images, size=size) if scale > 0 else images
            features.append(self.feature_extractor(scaled)[self.layer])
        return features

    def flow(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The cross-scale flow, block by block: what FrEIA's ``GraphINN`` of the blocks computes (tested)."""
        outputs, log_jacobian = list(features), torch.zeros(())
        for module in self.flow_blocks:
            outputs, jacobian = module(outputs)
            log_jacobian = log_jacobian + jacobian
        return outputs, log_jacobian

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor] | InferenceBatch:
        features = self.pyramid_features(images)
        if self.training:
            return self.flow(features)
        z_dist, _ = self.flow(features)
        anomaly_map = self.anomaly_map_generator(z_dist)
        return InferenceBatch(pred_score=CsFlowModel._compute_anomaly_scores(z_dist), anomaly_map=anomaly_map)  # noqa: SLF001


class GeneralizedCsflow(Csflow):
    """anomalib's ``Csflow`` training module around :class:`StageCsFlowModel`."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite2",
        layer: str = "layer4",
        pre_trained: bool = True,
        cross_conv_hidden_channels: int = 1024,
        n_coupling_blocks: int = 4,
        clamp: int = 3,
        num_channels: int = 3,
        pre_processor: Any = True,
        post_processor: Any = True,
        evaluator: Any = True,
        visualizer: Any = True,
    ) -> None:
        # Csflow.__init__ would build the torchvision EfficientNet-B5 model; its training step,
        # optimiser and trainer arguments are what we reuse.
        init_anomalib_module(self, pre_processor, post_processor, evaluator, visualizer, needs_input_size="CS-Flow")
        self.backbone = backbone
        self.cross_conv_hidden_channels = cross_conv_hidden_channels
        self.n_coupling_blocks = n_coupling_blocks
        self.clamp = clamp
        self.num_channels = num_channels
        self.model = StageCsFlowModel(
            input_size=tuple(self.input_size), backbone=backbone, layer=layer, pre_trained=pre_trained,
            cross_conv_hidden_channels=cross_conv_hidden_channels, n_coupling_blocks=n_coupling_blocks,
            clamp=clamp, num_channels=num_channels,
        )
        self.loss = CsFlowLoss()
