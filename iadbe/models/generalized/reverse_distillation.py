"""Reverse Distillation (Deng & Li, CVPR 2022) with any timm CNN as the teacher encoder.

anomalib 2.7 picks the one-class bottleneck (OCBE) and the student decoder from tables of ResNet
names. Here both are sized from the encoder's three stages (channels c1, c2, c3 at strides s, 2s,
4s), in the shape of the ResNet-18 variant:

* OCBE: stage 1 goes through two stride-2 3x3 convs (c1 -> c2 -> c3), stage 2 through one
  (c2 -> c3); the three maps at stride 4s are concatenated (3 c3 channels) and compressed by two
  residual BasicBlocks, the first with stride 2, into ``2 c3`` channels at stride 8s (ResNet-18:
  64/128/256 -> 512, exactly anomalib's OCBE there).
* Decoder: three stages of two ``DecoderBasicBlock``s, each upsampling by 2 with a transposed conv,
  back to c3, c2 and c1 channels.

The loss (cosine distance per stage), the anomaly map (sum of upsampled cosine distances, Gaussian
blur; the cosine written out for OpenVINO) and the training recipe (Adam, lr 0.005, betas 0.5/0.99, frozen encoder) are anomalib's.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from anomalib.data import InferenceBatch
from anomalib.models.components import GaussianBlur2d, TimmFeatureExtractor
from anomalib.models.components.backbone.resnet_decoder import DecoderBasicBlock
from anomalib.models.image.reverse_distillation import ReverseDistillation
from anomalib.models.image.reverse_distillation.anomaly_map import AnomalyMapGenerationMode, AnomalyMapGenerator
from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
from torch import nn
from torch.nn import functional as F
from torchvision.models.resnet import BasicBlock, conv1x1, conv3x3

from iadbe.models.generalized.stages import backbone_stages, require_halving_strides, init_anomalib_module

BLOCKS_PER_STAGE = 2  # as anomalib's ResNet-18 bottleneck and decoder


class StageBottleneck(nn.Module):
    """RD's one-class bottleneck embedding for encoder stages of ``channels`` (c1, c2, c3)."""

    def __init__(self, channels: Sequence[int], blocks: int = BLOCKS_PER_STAGE) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.conv1, self.bn1 = conv3x3(c1, c2, 2), nn.BatchNorm2d(c2)
        self.conv2, self.bn2 = conv3x3(c2, c3, 2), nn.BatchNorm2d(c3)
        self.conv3, self.bn3 = conv3x3(c2, c3, 2), nn.BatchNorm2d(c3)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = 2 * c3
        downsample = nn.Sequential(conv1x1(3 * c3, self.out_channels, 2), nn.BatchNorm2d(self.out_channels))
        layers = [BasicBlock(3 * c3, self.out_channels, 2, downsample)]
        layers += [BasicBlock(self.out_channels, self.out_channels) for _ in range(1, blocks)]
        self.bn_layer = nn.Sequential(*layers)
        _init_like_anomalib(self)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        feature0 = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(features[0]))))))
        feature1 = self.relu(self.bn3(self.conv3(features[1])))
        return self.bn_layer(torch.cat([feature0, feature1, features[2]], 1)).contiguous()


class StageDecoder(nn.Module):
    """RD's student: from the bottleneck back to the encoder stages' channels, coarse to fine."""

    def __init__(self, channels: Sequence[int], in_channels: int, blocks: int = BLOCKS_PER_STAGE) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.inplanes = in_channels
        self.layer1 = self._make_layer(c3, blocks)
        self.layer2 = self._make_layer(c2, blocks)
        self.layer3 = self._make_layer(c1, blocks)
        _init_like_anomalib(self)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        upsample = nn.Sequential(
            nn.ConvTranspose2d(self.inplanes, planes, kernel_size=2, stride=2, bias=False), nn.BatchNorm2d(planes),
        )
        layers = [DecoderBasicBlock(self.inplanes, planes, 2, upsample)]
        layers += [DecoderBasicBlock(planes, planes) for _ in range(1, blocks)]
        self.inplanes = planes
        return nn.Sequential(*layers)

    def forward(self, bottleneck: torch.Tensor) -> list[torch.Tensor]:
        feature_a = self.layer1(bottleneck)
        feature_b = self.layer2(feature_a)
        feature_c = self.layer3(feature_b)
        return [feature_c, feature_b, feature_a]


class ExportableAnomalyMapGenerator(AnomalyMapGenerator):
    """anomalib's RD anomaly map with the cosine similarity written out.

    OpenVINO's PyTorch frontend (2026.4) has no conversion rule for ``aten::cosine_similarity``.
    """

    def forward(self, student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]) -> torch.Tensor:
        distance_maps = []
        for student, teacher in zip(student_features, teacher_features, strict=True):
            distance = 1 - cosine_similarity(student, teacher).unsqueeze(1)
            distance_maps.append(F.interpolate(distance, size=self.image_size, mode="bilinear", align_corners=True))
        anomaly_map = distance_maps[0]
        for distance in distance_maps[1:]:
            if self.mode == AnomalyMapGenerationMode.MULTIPLY:
                anomaly_map = anomaly_map * distance
            else:
                anomaly_map = anomaly_map + distance
        blur = GaussianBlur2d(kernel_size=(self.kernel_size, self.kernel_size), sigma=(self.sigma, self.sigma))
        return blur.to(anomaly_map.device)(anomaly_map)


def cosine_similarity(first: torch.Tensor, second: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``F.cosine_similarity(first, second, dim=1)`` (each norm clamped at ``eps``, as torch does)."""
    first_norm = first.norm(dim=1).clamp_min(eps)
    second_norm = second.norm(dim=1).clamp_min(eps)
    return (first * second).sum(dim=1) / (first_norm * second_norm)


def _init_like_anomalib(module: nn.Module) -> None:
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(child, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.constant_(child.weight, 1)
            nn.init.constant_(child.bias, 0)


class StageReverseDistillationModel(nn.Module):
    """Torch model: frozen timm encoder, trainable bottleneck and decoder sized from its stages."""

    def __init__(
        self,
        backbone: str,
        input_size: tuple[int, int],
        layers: Sequence[str],
        anomaly_map_mode: AnomalyMapGenerationMode | str = AnomalyMapGenerationMode.ADD,
        pre_trained: bool = True,
    ) -> None:
        super().__init__()
        stages = backbone_stages(backbone, layers)
        if len(stages) != 3:
            from iadbe.errors import SettingsError

            raise SettingsError(f"Reverse Distillation needs 3 encoder layers, got {list(layers)}")
        require_halving_strides(stages, "Reverse Distillation")
        channels = [stage.channels for stage in stages]
        self.encoder = TimmFeatureExtractor(backbone=backbone, layers=[s.name for s in stages], pre_trained=pre_trained)
        self.bottleneck = StageBottleneck(channels)
        self.decoder = StageDecoder(channels, self.bottleneck.out_channels)
        self.anomaly_map_generator = ExportableAnomalyMapGenerator(
            image_size=tuple(input_size), mode=AnomalyMapGenerationMode(anomaly_map_mode),
        )

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]] | InferenceBatch:
        self.encoder.eval()
        encoder_features = list(self.encoder(images).values())
        decoder_features = self.decoder(self.bottleneck(encoder_features))
        if self.training:
            return encoder_features, decoder_features
        anomaly_map = self.anomaly_map_generator(encoder_features, decoder_features)
        return InferenceBatch(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)


class GeneralizedReverseDistillation(ReverseDistillation):
    """anomalib's ``ReverseDistillation`` training module around :class:`StageReverseDistillationModel`."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        anomaly_map_mode: AnomalyMapGenerationMode | str = AnomalyMapGenerationMode.ADD,
        pre_trained: bool = True,
        pre_processor: Any = True,
        post_processor: Any = True,
        evaluator: Any = True,
        visualizer: Any = True,
    ) -> None:
        # ReverseDistillation.__init__ would build anomalib's ResNet-only model; its training step,
        # optimiser and trainer arguments are what we reuse.
        init_anomalib_module(self, pre_processor, post_processor, evaluator, visualizer, needs_input_size="Reverse Distillation")
        self.backbone = backbone
        self.pre_trained = pre_trained
        self.layers = list(layers)
        self.anomaly_map_mode = AnomalyMapGenerationMode(anomaly_map_mode)
        self.model = StageReverseDistillationModel(
            backbone=backbone, input_size=tuple(self.input_size), layers=self.layers,
            anomaly_map_mode=self.anomaly_map_mode, pre_trained=pre_trained,
        )
        self.loss = ReverseDistillationLoss()
