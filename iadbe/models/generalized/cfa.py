"""CFA (Lee et al., IEEE Access 2022): coupled-hypersphere feature adaptation on any timm CNN.

anomalib 2.7 builds CFA from torchvision's vgg19_bn / resnet18 / wide_resnet50_2 (DEFAULT weights,
downloaded) and takes the descriptor width from a table of names. Here the features are the
backbone's stride 4, 8 and 16 stages (ResNet's layer1..layer3, the ones anomalib uses for resnet18)
from timm, and the descriptor's CoordConv is sized from their channels. The descriptor, loss
(attraction to the K nearest memory points, repulsion of the J hard negatives), memory-bank
initialisation and anomaly map are anomalib's, with three changes:

* the memory bank is initialised on *pre-processed* (normalised) images; anomalib 2.7 reads the
  data module's loader directly, whose images its pre-processor has not normalised yet, so its
  centroids come from other features than the ones it trains and scores;
* it reads the training loader Lightning is fitting on (IADBE trains without a data module);
* squared distances are clamped at 0 before the square root (float rounding can make them
  slightly negative; anomalib's map then holds NaN).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from anomalib.data import InferenceBatch
from anomalib.models.components import DynamicBufferMixin, TimmFeatureExtractor
from anomalib.models.components.cluster.kmeans import KMeans
from anomalib.models.image.cfa import Cfa
from anomalib.models.image.cfa.anomaly_map import AnomalyMapGenerator
from anomalib.models.image.cfa.loss import CfaLoss
from anomalib.models.image.cfa.torch_model import CoordConv2d
from torch import nn
from torch.nn import functional as F

from iadbe.models.generalized.stages import RESNET_STAGES_1_TO_3, backbone_stages, init_anomalib_module


class StageDescriptor(nn.Module):
    """CFA's patch descriptor: 3x3 average-pooled stages, upsampled to the finest, then a CoordConv."""

    def __init__(self, in_channels: int, gamma_d: int) -> None:
        super().__init__()
        self.layer = CoordConv2d(in_channels=in_channels, out_channels=in_channels // gamma_d, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = [F.avg_pool2d(feature, 3, 1, 1) for feature in features]
        size = pooled[0].shape[-2:]
        resized = [pooled[0]] + [F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pooled[1:]]
        return self.layer(torch.cat(resized, dim=1))


class StageCfaModel(DynamicBufferMixin):
    """Torch model: frozen timm stages, trainable descriptor, memory bank of (channels x centroids)."""

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str] = RESNET_STAGES_1_TO_3,
        gamma_c: int = 1,
        gamma_d: int = 1,
        num_nearest_neighbors: int = 3,
        num_hard_negative_features: int = 3,
        radius: float = 1e-5,
        pre_trained: bool = True,
    ) -> None:
        super().__init__()
        stages = backbone_stages(backbone, layers)
        self.gamma_c = gamma_c
        self.gamma_d = gamma_d
        self.num_nearest_neighbors = num_nearest_neighbors
        self.num_hard_negative_features = num_hard_negative_features
        self.register_buffer("memory_bank", torch.tensor(0.0))
        self.memory_bank: torch.Tensor
        self.feature_extractor = TimmFeatureExtractor(
            backbone=backbone, layers=[stage.name for stage in stages], pre_trained=pre_trained, requires_grad=False,
        )
        self.descriptor = StageDescriptor(sum(stage.channels for stage in stages), gamma_d)
        self.anomaly_map_generator = AnomalyMapGenerator(num_nearest_neighbors=num_nearest_neighbors)

    def describe(self, images: torch.Tensor) -> torch.Tensor:
        """Target-oriented features (B x D x H x W) of normalised images."""
        self.feature_extractor.eval()
        with torch.no_grad():
            features = list(self.feature_extractor(images).values())
        return self.descriptor(features)

    @torch.no_grad()
    def initialize_centroid(self, batches: Any, prepare: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Memory bank = mean descriptor map over the training images (k-means'd when ``gamma_c > 1``).

        ``batches`` yields anomalib batches; ``prepare`` turns their images into model input.
        """
        device = next(self.descriptor.parameters()).device
        total, count, scale = None, 0, None
        for batch in batches:
            described = self.describe(prepare(batch.image.to(device)))
            total = described.sum(dim=0) if total is None else total + described.sum(dim=0)
            count += described.shape[0]
            scale = described.shape[-2:]
        if total is None:
            raise ValueError("CFA needs at least one training batch to initialise its memory bank")
        memory_bank = (total / count).flatten(1).transpose(0, 1)  # (H W) x D
        if self.gamma_c > 1:
            k_means = KMeans(n_clusters=(scale[0] * scale[1]) // self.gamma_c, max_iter=3000)
            _, memory_bank = k_means.fit(memory_bank)
        self.memory_bank = memory_bank.detach().to(device).transpose(0, 1).contiguous()  # D x M

    def compute_distance(self, target_oriented_features: torch.Tensor) -> torch.Tensor:
        """Squared distances (B x HW x M) of every patch feature to every memory point."""
        features = target_oriented_features.flatten(2).transpose(1, 2)  # B x HW x D
        squared = features.pow(2).sum(dim=2, keepdim=True)
        centers = self.memory_bank.pow(2).sum(dim=0, keepdim=True)
        return squared + centers - 2 * torch.matmul(features, self.memory_bank)

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        if self.memory_bank.ndim == 0:
            raise ValueError("CFA's memory bank is not initialised; train the model first")
        target_features = self.describe(images)
        distance = self.compute_distance(target_features)
        if self.training:
            return distance
        score = self._patch_scores(distance).reshape(-1, 1, *target_features.shape[-2:])
        anomaly_map = self.anomaly_map_generator.compute_anomaly_map(score, image_size=images.shape[-2:]).squeeze(1)
        return InferenceBatch(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)

    def _patch_scores(self, distance: torch.Tensor) -> torch.Tensor:
        """anomalib's ``compute_score`` (softmin-weighted nearest distance), without einops."""
        nearest = distance.clamp_min(0).sqrt().topk(self.num_nearest_neighbors, largest=False).values
        return F.softmin(nearest, dim=-1)[:, :, 0] * nearest[:, :, 0]


class GeneralizedCfa(Cfa):
    """anomalib's ``Cfa`` training module around :class:`StageCfaModel`."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        layers: Sequence[str] = RESNET_STAGES_1_TO_3,
        gamma_c: int = 1,
        gamma_d: int = 1,
        num_nearest_neighbors: int = 3,
        num_hard_negative_features: int = 3,
        radius: float = 1e-5,
        pre_trained: bool = True,
        pre_processor: Any = True,
        post_processor: Any = True,
        evaluator: Any = True,
        visualizer: Any = True,
    ) -> None:
        # Cfa.__init__ would build anomalib's torchvision-only model; its training step, backward,
        # optimiser and pre-processor are what we reuse.
        init_anomalib_module(self, pre_processor, post_processor, evaluator, visualizer)
        self.model = StageCfaModel(
            backbone=backbone, layers=layers, gamma_c=gamma_c, gamma_d=gamma_d,
            num_nearest_neighbors=num_nearest_neighbors, num_hard_negative_features=num_hard_negative_features,
            radius=radius, pre_trained=pre_trained,
        )
        self.loss = CfaLoss(
            num_nearest_neighbors=num_nearest_neighbors, num_hard_negative_features=num_hard_negative_features,
            radius=radius,
        )

    def on_train_start(self) -> None:
        self.model.initialize_centroid(self.trainer.train_dataloader, self._prepare_images)

    def _prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """What the pre-processor does to a training batch before ``training_step`` sees it."""
        return self.pre_processor.transform(images) if self.pre_processor else images
