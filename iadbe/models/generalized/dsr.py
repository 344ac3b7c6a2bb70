"""DSR (Zavrtanik et al., 2022) with its quantised-feature model trained here instead of downloaded.

anomalib 2.7 downloads ``vq_model_pretrained_128_4096.pckl`` at the start of training: the paper's
discrete latent model (a two-level VQ-VAE, 4096 codes of 128 dims per level) trained on ImageNet,
frozen while DSR trains. Neither the file nor ImageNet is here, so this module adds a first phase
that trains that same anomalib ``DiscreteLatentModel`` on the training images (normal images of the
category): image reconstruction (MSE) plus the VQ-VAE commitment loss, codebooks updated by
exponential moving averages (decay 0.99, as the VQ-VAE-2 recipe DSR builds on), codes that receive
no features restarted at random encoder outputs. It is then frozen and DSR's own two phases follow
unchanged (anomalib's networks, anomaly generators, losses and learning rates).

Differences from the paper, all recorded with the model (``detector.extra.implementation = "iadbe"``,
``init_args.vq_train_ratio``):

* the codebooks know only this category's normal appearance, from a short budget, not ImageNet;
* the phases switch by training step (``vq_train_ratio`` of all steps for the VQ model, then
  ``upsampling_train_ratio`` of the rest for the reconstruction/detection modules, the remainder for
  the upsampling module) rather than by epoch, so that short runs still train all three; anomalib's
  learning-rate decay of phase 2 (x0.1 at 80 %) is stepped per step (anomalib never steps it under
  manual optimisation).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from anomalib.data import Batch
from anomalib.data.transforms.utils import extract_transforms_by_type
from anomalib.models.image.dsr import Dsr
from anomalib.models.image.dsr.torch_model import DsrModel, VectorQuantizer
from torch.nn import functional as F
from torchvision.transforms.v2 import Normalize

from iadbe.errors import SettingsError

logger = logging.getLogger(__name__)

#: VQ-VAE(-2) training constants: EMA decay of the codebooks, commitment weight, Laplace smoothing.
EMA_DECAY, COMMITMENT, EPSILON = 0.99, 0.25, 1e-5
#: Rows of the distance matrix computed at once while training (bounds the N x 4096 temporary).
_CHUNK = 8192


class TrainableVectorQuantizer(VectorQuantizer):
    """anomalib's ``VectorQuantizer`` (same parameters and outputs) that can also learn its codebook.

    The forward picks the nearest code with an index lookup instead of a one-hot N x K matrix
    multiply: the same numbers (a one-hot product selects rows exactly) with half the memory.
    """

    def nearest_codes(self, flat: torch.Tensor) -> torch.Tensor:
        weight = self._embedding.weight
        distances = (flat**2).sum(1, keepdim=True) + (weight**2).sum(1) - 2 * flat @ weight.t()
        return distances.argmin(1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        channels_last = inputs.permute(0, 2, 3, 1)
        flat = channels_last.reshape(-1, self._embedding_dim)
        quantized = F.embedding(self.nearest_codes(flat), self._embedding.weight).reshape(channels_last.shape)
        quantized = channels_last + (quantized - channels_last).detach()
        return quantized.permute(0, 3, 1, 2).contiguous()

    def train_step(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise ``inputs`` and update the codebook by EMA; returns (quantized, commitment loss)."""
        flat = inputs.permute(0, 2, 3, 1).reshape(-1, self._embedding_dim)
        with torch.no_grad():
            detached = flat.detach()
            if self._ema_cluster_size.sum() == 0:  # first step: codes drawn from the data
                self._reset_codes(torch.ones(self._num_embeddings, dtype=torch.bool), detached)
            indices = torch.cat([self.nearest_codes(chunk) for chunk in detached.split(_CHUNK)])
            self._update_codebook(indices, detached)
        quantized = F.embedding(indices, self._embedding.weight).reshape(flat.shape)
        commitment = F.mse_loss(flat, quantized.detach())
        quantized = flat + (quantized - flat).detach()
        batch, _, height, width = inputs.shape
        return quantized.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous(), commitment

    def _update_codebook(self, indices: torch.Tensor, flat: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self._num_embeddings).to(flat.dtype)
        sums = torch.zeros_like(self._ema_w).index_add_(0, indices, flat)
        self._ema_cluster_size.mul_(EMA_DECAY).add_(counts, alpha=1 - EMA_DECAY)
        self._ema_w.data.mul_(EMA_DECAY).add_(sums, alpha=1 - EMA_DECAY)
        total = self._ema_cluster_size.sum()
        smoothed = (self._ema_cluster_size + EPSILON) / (total + self._num_embeddings * EPSILON) * total
        self._embedding.weight.data.copy_(self._ema_w / smoothed.unsqueeze(1))
        self._reset_codes(self._ema_cluster_size < 1e-3, flat)

    def _reset_codes(self, dead: torch.Tensor, flat: torch.Tensor) -> None:
        """Move unused codes onto random current features (else they never win a feature again)."""
        count = int(dead.sum())
        if count == 0:
            return
        picks = flat[torch.randint(len(flat), (count,), device=flat.device)]
        self._embedding.weight.data[dead] = picks
        self._ema_w.data[dead] = picks
        self._ema_cluster_size[dead] = 1.0


def make_discrete_model_trainable(model: DsrModel) -> None:
    """Give ``model``'s discrete latent model quantizers that can learn (same state dict keys) and
    out-of-place ReLUs.

    anomalib's residual blocks (from the VQ-VAE code DSR uses) start with ``ReLU(inplace=True)``,
    which overwrites the block's input: the block computes ``relu(x) + f(x)`` and autograd cannot
    differentiate through it when ``x`` is itself a ReLU output. anomalib never trains this model;
    here it is trained, so its ReLUs are out of place (``x + f(x)``, a plain residual), in training
    and inference alike.
    """
    latent = model.discrete_latent_model
    for module in latent.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    for name in ("_vq_vae_top", "_vq_vae_bot"):
        old = getattr(latent, name)
        new = TrainableVectorQuantizer(old._num_embeddings, old._embedding_dim)  # noqa: SLF001
        new.load_state_dict(old.state_dict())
        setattr(latent, name, new)


def vq_reconstruction_step(model: DsrModel, images: torch.Tensor) -> torch.Tensor:
    """One VQ-VAE training loss of anomalib's ``DiscreteLatentModel`` (its forward, codebooks learning)."""
    latent = model.discrete_latent_model
    enc_b = latent._encoder_b(images)  # noqa: SLF001 (anomalib's own submodules, same order as its forward)
    enc_t = latent._encoder_t(enc_b)  # noqa: SLF001
    quantized_t, commitment_t = latent._vq_vae_top.train_step(latent._pre_vq_conv_top(enc_t))  # noqa: SLF001
    up_quantized_t = latent.upsample_t(quantized_t)
    zb = latent._pre_vq_conv_bot(torch.cat((enc_b, up_quantized_t), dim=1))  # noqa: SLF001
    quantized_b, commitment_b = latent._vq_vae_bot.train_step(zb)  # noqa: SLF001
    reconstruction = latent._decoder_b(torch.cat((up_quantized_t, quantized_b), dim=1))  # noqa: SLF001
    return F.mse_loss(reconstruction, images) + COMMITMENT * (commitment_t + commitment_b)


class GeneralizedDsr(Dsr):
    """anomalib's ``Dsr`` whose discrete latent model is trained first, on the training images."""

    def __init__(
        self,
        latent_anomaly_strength: float = 0.2,
        upsampling_train_ratio: float = 0.7,
        vq_train_ratio: float = 0.3,
        vq_learning_rate: float = 2e-4,
        pre_processor: Any = True,
        post_processor: Any = True,
        evaluator: Any = True,
        visualizer: Any = True,
    ) -> None:
        super().__init__(latent_anomaly_strength=latent_anomaly_strength,
                         upsampling_train_ratio=upsampling_train_ratio, pre_processor=pre_processor,
                         post_processor=post_processor, evaluator=evaluator, visualizer=visualizer)
        if not 0 < vq_train_ratio < 1 or not 0 < upsampling_train_ratio < 1:
            raise SettingsError("DSR's vq_train_ratio and upsampling_train_ratio must be between 0 and 1")
        self.vq_train_ratio = vq_train_ratio
        self.vq_learning_rate = vq_learning_rate
        make_discrete_model_trainable(self.model)
        self.vq_steps = 0
        self.second_phase_end = 0

    def phase_steps(self, total_steps: int) -> tuple[int, int]:
        """(last VQ step, last reconstruction step) for ``total_steps``; each phase gets at least one."""
        if total_steps < 3:
            raise SettingsError(
                f"DSR trains in three phases (VQ model, reconstruction/detection, upsampling) and needs at least "
                f"3 training steps; got {total_steps}: use more epochs or a smaller batch size"
            )
        vq_steps = min(max(1, round(total_steps * self.vq_train_ratio)), total_steps - 2)
        second = min(max(1, int((total_steps - vq_steps) * self.upsampling_train_ratio)), total_steps - vq_steps - 1)
        return vq_steps, vq_steps + second

    def configure_optimizers(self) -> Any:
        total = int(self.trainer.estimated_stepping_batches)
        self.vq_steps, self.second_phase_end = self.phase_steps(total)
        optimizer_vq = torch.optim.Adam(self.vq_parameters(), lr=self.vq_learning_rate)
        optimizer_d = torch.optim.Adam(
            params=list(self.model.image_reconstruction_network.parameters())
            + list(self.model.subspace_restriction_module_hi.parameters())
            + list(self.model.subspace_restriction_module_lo.parameters())
            + list(self.model.anomaly_detection_module.parameters()),
            lr=0.0002,
        )
        anneal = max(1, int(0.8 * (self.second_phase_end - self.vq_steps)))
        self.scheduler_d = torch.optim.lr_scheduler.StepLR(optimizer_d, anneal, gamma=0.1)
        optimizer_u = torch.optim.Adam(params=self.model.upsampling_module.parameters(), lr=0.0002)
        return [optimizer_vq, optimizer_d, optimizer_u]

    def vq_parameters(self) -> list[torch.nn.Parameter]:
        """What gradient descent trains in the VQ phase: everything but the EMA codebooks."""
        latent = self.model.discrete_latent_model
        codebooks = {id(p) for vq in (latent.vq_vae_top, latent.vq_vae_bot) for p in vq.parameters()}
        return [p for p in latent.parameters() if id(p) not in codebooks]

    def on_train_start(self) -> None:
        """anomalib's check (no Normalize), but no download: the discrete model is trained here."""
        if self.pre_processor and extract_transforms_by_type(self.pre_processor.transform, Normalize):
            raise ValueError("Transforms for DSR should not contain Normalize.")
        self._set_vq_trainable(True)

    def on_train_epoch_start(self) -> None:  # anomalib's logs an epoch-based phase change
        pass

    def _set_vq_trainable(self, trainable: bool) -> None:
        for parameter in self.vq_parameters():
            parameter.requires_grad = trainable

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        del args, kwargs
        optimizer_vq, optimizer_d, optimizer_u = self.optimizers()
        step = self.global_step_count()
        if step < self.vq_steps:
            loss = vq_reconstruction_step(self.model, batch.image)
            optimizer_vq.zero_grad()
            self.manual_backward(loss)
            optimizer_vq.step()
        elif step < self.second_phase_end:
            if step == self.vq_steps:
                self._set_vq_trainable(False)
                logger.info("DSR: VQ model trained (%d steps); training reconstruction and detection", step)
            loss = self._second_stage_loss(batch.image)
            optimizer_d.zero_grad()
            self.manual_backward(loss)
            optimizer_d.step()
            self.scheduler_d.step()
        else:
            images, anomaly_maps = self.perlin_generator(batch.image)
            loss = self.third_stage_loss(self.model(images)["anomaly_map"], anomaly_maps)
            optimizer_u.zero_grad()
            self.manual_backward(loss)
            optimizer_u.step()
        self._steps_done = step + 1
        self.log("train_loss", loss.item(), on_epoch=True, prog_bar=True, logger=True)
        return {"loss": loss}

    def global_step_count(self) -> int:
        """Training steps done so far (Lightning's ``global_step`` counts every optimiser's steps)."""
        return getattr(self, "_steps_done", 0)

    def _second_stage_loss(self, images: torch.Tensor) -> torch.Tensor:
        anomaly_mask = self.quantized_anomaly_generator.augment_batch(images)
        outputs = self.model(images, anomaly_mask)
        return self.second_stage_loss(
            outputs["recon_feat_hi"], outputs["recon_feat_lo"], outputs["embedding_bot"], outputs["embedding_top"],
            images, outputs["obj_spec_image"], outputs["anomaly_map"], outputs["true_anomaly_map"],
        )
