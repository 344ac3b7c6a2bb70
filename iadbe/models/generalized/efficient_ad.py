"""EfficientAD (Batzner et al., 2024) with a teacher distilled here and offline penalty images.

anomalib 2.7 downloads a pretrained PDN teacher (distilled by the authors from WideResNet-101
features on ImageNet) and Imagenette (~1.5 GB) for the student's penalty loss. Neither is here.
This module keeps anomalib's ``EfficientAdModel`` (teacher and student PDNs, autoencoder, losses,
map normalisation) and its training recipe, and changes what the downloads provided:

* **Teacher**: distilled at the start of training, as the paper distils WideResNet-101 features
  into the PDN, from the chosen timm backbone's stride-8 and stride-16 stages (ResNet's layer2 and
  layer3, the layers the paper uses), each 3x3 average-pooled (PatchCore's local aggregation),
  resized to the PDN's output and concatenated, standardised per channel. The teacher has as many
  output channels as those features (``min(teacher_out_channels, channels)``: 152 for Lite0, 168 for
  Lite2, instead of 384). It is distilled for ``distillation_ratio`` of the training steps on the
  training images plus the penalty images, not for 60 000 ImageNet steps: it only knows this
  category and a few photographs.
* **Penalty images**: scikit-image's bundled photographs and textures (19 images, no download),
  transformed as anomalib transforms Imagenette (resize to twice the size, random greyscale), with a
  random instead of a centre crop for variety.
* **Map normalisation quantiles**: computed on the training images at the end of training (anomalib
  uses the normal images of its validation split, which IADBE's training loop does not run).

The phases switch by step (distillation, then anomalib's student/autoencoder training); the
learning-rate decay (x0.1 at 95 % of the student's steps) is anomalib's.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

import torch
from anomalib.data import Batch
from anomalib.models.components import TimmFeatureExtractor
from anomalib.models.image.efficient_ad import EfficientAd
from anomalib.models.image.efficient_ad.torch_model import EfficientAdModelSize
from torch.nn import functional as F

from iadbe.errors import SettingsError
from iadbe.models.generalized.stages import backbone_stages

logger = logging.getLogger(__name__)

#: The paper distils WideResNet-101's layer2 and layer3; the same strides of any CNN.
DISTILLATION_LAYERS = ("layer2", "layer3")
#: scikit-image's bundled images used as penalty images (all ship with the package, no download).
PENALTY_IMAGES = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "moon", "page",
                  "rocket", "text", "immunohistochemistry", "hubble_deep_field", "colorwheel", "retina",
                  "stereo_motorcycle", "cell", "clock")


def distillation_channels(backbone: str) -> int:
    """Channels of the concatenated distillation features of ``backbone``."""
    return sum(stage.channels for stage in backbone_stages(backbone, DISTILLATION_LAYERS))


def penalty_images() -> list[torch.Tensor]:
    """scikit-image's bundled images as float RGB tensors (3, H, W) in [0, 1]."""
    import numpy as np
    from skimage import data

    images = []
    for name in PENALTY_IMAGES:
        array = getattr(data, name)()
        array = array[0] if isinstance(array, tuple) else array
        array = np.asarray(array, dtype=np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
        array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
        images.append(torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1))
    return images


class PenaltyImages(torch.utils.data.Dataset):
    """Penalty images, transformed as anomalib transforms Imagenette (random crop instead of centre)."""

    def __init__(self, image_size: tuple[int, int], length: int = 1000) -> None:
        from torchvision.transforms.v2 import Compose, RandomCrop, RandomGrayscale, Resize

        self.images = penalty_images()
        self.length = length
        self.transform = Compose([Resize((image_size[0] * 2, image_size[1] * 2), antialias=True),
                                  RandomGrayscale(p=0.3), RandomCrop(tuple(image_size))])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index % len(self.images)]), 0


class FeatureTarget(torch.nn.Module):
    """The teacher's distillation target: pooled, resized, concatenated and standardised CNN features."""

    def __init__(self, backbone: str, pre_trained: bool = True) -> None:
        super().__init__()
        import timm

        stages = backbone_stages(backbone, DISTILLATION_LAYERS)
        self.layers = [stage.name for stage in stages]
        self.extractor = TimmFeatureExtractor(backbone, layers=self.layers, pre_trained=pre_trained).eval()
        config = timm.get_pretrained_cfg(backbone)
        mean, std = (config.mean, config.std) if config is not None else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1))
        channels = sum(stage.channels for stage in stages)
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    @torch.no_grad()
    def raw(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        features = self.extractor((images - self.input_mean) / self.input_std)
        pooled = [F.interpolate(F.avg_pool2d(features[layer], 3, stride=1, padding=1), size=size, mode="bilinear")
                  for layer in self.layers]
        return torch.cat(pooled, dim=1)

    @torch.no_grad()
    def fit_statistics(self, batches: Iterator[torch.Tensor], size: tuple[int, int]) -> None:
        total, total_sq, count = 0.0, 0.0, 0
        for images in batches:
            features = self.raw(images, size)
            total = total + features.sum(dim=(0, 2, 3))
            total_sq = total_sq + features.square().sum(dim=(0, 2, 3))
            count += features[:, 0].numel()
        mean = total / count
        self.mean.copy_(mean.view_as(self.mean))
        self.std.copy_((total_sq / count - mean.square()).clamp_min(1e-8).sqrt().view_as(self.std))

    def forward(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return (self.raw(images, size) - self.mean) / self.std


class GeneralizedEfficientAd(EfficientAd):
    """anomalib's ``EfficientAd`` with its teacher distilled here from ``backbone`` (see the module docs)."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        pre_trained: bool = True,
        teacher_out_channels: int = 384,
        model_size: EfficientAdModelSize | str = EfficientAdModelSize.S,
        lr: float = 0.0001,
        weight_decay: float = 0.00001,
        padding: bool = False,
        pad_maps: bool = True,
        distillation_ratio: float = 0.3,
        pre_processor: Any = True,
        post_processor: Any = True,
        evaluator: Any = True,
        visualizer: Any = True,
    ) -> None:
        if not 0 < distillation_ratio < 1:
            raise SettingsError(f"EfficientAD's distillation_ratio must be between 0 and 1, got {distillation_ratio}")
        channels = min(teacher_out_channels, distillation_channels(backbone))
        super().__init__(imagenet_dir="(not used)", teacher_out_channels=channels, model_size=model_size, lr=lr,
                         weight_decay=weight_decay, padding=padding, pad_maps=pad_maps, pre_processor=pre_processor,
                         post_processor=post_processor, evaluator=evaluator, visualizer=visualizer)
        if self.input_size is not None and min(self.input_size) < 256:
            raise SettingsError(f"EfficientAD's autoencoder needs images of at least 256 px, got {tuple(self.input_size)}")
        self.automatic_optimization = False
        self.backbone = backbone
        self.pre_trained = pre_trained
        self.distillation_ratio = distillation_ratio
        self.distillation_steps = 0
        self._steps_done = 0

    # --- phases and optimisers ---

    def phase_steps(self, total_steps: int) -> int:
        """Number of distillation steps of ``total_steps``; each phase gets at least one."""
        if total_steps < 2:
            raise SettingsError(f"EfficientAD trains in two phases (teacher distillation, student) and needs at least "
                                f"2 training steps; got {total_steps}: use more epochs or images")
        return min(max(1, round(total_steps * self.distillation_ratio)), total_steps - 1)

    def configure_optimizers(self) -> Any:
        total = int(self.trainer.estimated_stepping_batches)
        self.distillation_steps = self.phase_steps(total)
        teacher = torch.optim.Adam(self.model.teacher.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        student = torch.optim.Adam(list(self.model.student.parameters()) + list(self.model.ae.parameters()),
                                   lr=self.lr, weight_decay=self.weight_decay)
        decay_at = max(1, int(0.95 * (total - self.distillation_steps)))
        self.student_scheduler = torch.optim.lr_scheduler.StepLR(student, step_size=decay_at, gamma=0.1)
        return [teacher, student]

    def on_train_start(self) -> None:
        from anomalib.data.transforms.utils import extract_transforms_by_type
        from torchvision.transforms.v2 import Normalize

        if self.pre_processor and extract_transforms_by_type(self.pre_processor.transform, Normalize):
            raise ValueError("Transforms for EfficientAd should not contain Normalize.")
        sample = next(iter(self.trainer.train_dataloader))
        self.image_size = tuple(sample.image.shape[-2:])
        self.output_size = tuple(self.model.teacher(sample.image[:1].to(self.device)).shape[-2:])
        self.target = FeatureTarget(self.backbone, self.pre_trained).to(self.device)
        self.target.fit_statistics((batch.image.to(self.device) for batch in self.trainer.train_dataloader),
                                   self.output_size)
        self.penalty_loader = torch.utils.data.DataLoader(PenaltyImages(self.image_size), batch_size=1, shuffle=True)
        self.penalty_iterator = iter(self.penalty_loader)
        for parameter in self.model.teacher.parameters():
            parameter.requires_grad = True

    def next_penalty_image(self) -> torch.Tensor:
        try:
            images, _ = next(self.penalty_iterator)
        except StopIteration:
            self.penalty_iterator = iter(self.penalty_loader)
            images, _ = next(self.penalty_iterator)
        return images.to(self.device)

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        del args, kwargs
        teacher_optimizer, student_optimizer = self.optimizers()
        step = self._steps_done
        if step < self.distillation_steps:
            loss = self._distillation_loss(batch.image)
            optimizer = teacher_optimizer
        else:
            if step == self.distillation_steps:
                self._finish_distillation()
            loss = self._student_loss(batch.image)
            optimizer = student_optimizer
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        if step >= self.distillation_steps:
            self.student_scheduler.step()
        self._steps_done = step + 1
        self.log("train_loss", loss.item(), on_epoch=True, prog_bar=True, logger=True)
        return {"loss": loss}

    def _distillation_loss(self, images: torch.Tensor) -> torch.Tensor:
        images = torch.cat([images, self.next_penalty_image()])
        target = self.target(images, self.output_size)
        return F.mse_loss(self.model.teacher(images), target)

    def _student_loss(self, images: torch.Tensor) -> torch.Tensor:
        loss_st, loss_ae, loss_stae = self.model(batch=images, batch_imagenet=self.next_penalty_image())
        return loss_st + loss_ae + loss_stae

    @torch.no_grad()
    def _finish_distillation(self) -> None:
        """Freeze the distilled teacher and standardise its channels over the training images (anomalib's step)."""
        self.model.teacher.eval()
        for parameter in self.model.teacher.parameters():
            parameter.requires_grad = False
        self.model.mean_std.update(self.teacher_channel_mean_std(self.trainer.train_dataloader))
        logger.info("EfficientAD: teacher distilled (%d steps); training student and autoencoder", self._steps_done)

    def on_train_end(self) -> None:
        """Map normalisation quantiles from the training images (anomalib: validation normals)."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            maps = [self.model.get_maps(batch.image.to(self.device), normalize=False)
                    for batch in self.trainer.train_dataloader]
        qa_st, qb_st = self._get_quantiles_of_maps([map_st for map_st, _ in maps])
        qa_ae, qb_ae = self._get_quantiles_of_maps([map_ae for _, map_ae in maps])
        self.model.quantiles.update({"qa_st": qa_st, "qa_ae": qa_ae, "qb_st": qb_st, "qb_ae": qb_ae})
        self.model.train(was_training)
        del self.target  # not part of the stored model

    def on_validation_start(self) -> None:  # IADBE calibrates outside Lightning
        pass
