"""Inference forwards that stay correct for any batch size once traced for export, and what all graphs share.

``openvino.convert_model`` traces the graph with an example batch of 2. anomalib 2.7's torch forwards
for several models take Python ints from shapes (``len(features)``, ``range(n)``, ``min(...)``,
``view(batch_size, -1)``), so the traced graph bakes in that batch and fails (or silently reads
past the end) at batch 1 or 8 in OpenVINO. The forwards compute exactly the same numbers as
anomalib's eval-mode forwards with tensor ops whose shapes follow the input. Each detector's registry
entry names its own as its ``graph`` hook; those of the detectors with a module of their own live there:

* PatchCore (:mod:`iadbe.models.patchcore`): nearest neighbours and the paper's re-weighting without
  the chunk loop.
* DFKDE (:mod:`iadbe.models.dfkde`): ``len(...)`` + ``view`` and the Gaussian KDE's Python loop over the batch.
* DFM (here): ``len(features)`` + ``view(batch_size, -1)`` and PCA's in-place ``features -= mean``.
* FRE (here): ``len(features_in)`` + ``view(batch_size, -1)``.
* CFLOW (here): the loop over fixed-size "fiber" chunks (its count and the last ``arange`` are Python
  ints); here all fibers of a layer go through the flow at once, as anomalib itself does under
  ``torch.compile``. Note anomalib's CFLOW normalises its map by maxima over the *whole batch*,
  so a CFLOW score depends on the other images in the same batch; this is kept as is.
  Its flow blocks also use ``Softplus(beta=0.5)``, whose ``beta`` OpenVINO's PyTorch frontend drops
  (checked with 2026.4): the graph computes it as a beta-1 softplus (bitwise equal in torch).

STFPM, GANomaly, DRAEM and SuperSimpleNet trace correctly with anomalib's own forward.

PaDiM and PatchCore go further for the input size the graph is built for: exact rewrites of the costly
steps (:func:`iadbe.models.padim.padim_graph`, :mod:`iadbe.models.resampling`). Every graph gets
:func:`separable_blurs`. Tested against anomalib's forwards and through OpenVINO in tests/test_model_smoke.py.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator


def model_device(model: Any) -> Any:
    """Where the model's tensors are (graphs are usually built on the CPU; a GPU-trained model may not be)."""
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def feature_shapes(model: Any, image_size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Shapes of ``model.feature_extractor``'s outputs for one image of ``image_size``, computed in eval
    mode (a train-mode pass would move batch-norm statistics) and the mode restored."""
    import torch

    extractor = model.feature_extractor
    was_training = extractor.training
    extractor.eval()
    try:
        with torch.no_grad():
            features = extractor(torch.zeros(1, 3, *image_size, device=model_device(model)))
    finally:
        extractor.train(was_training)
    return {layer: tuple(feature.shape) for layer, feature in features.items()}

def dfm_forward(model: Any, images: Any) -> Any:
    """anomalib ``DFMModel.forward`` in eval mode, batch-dynamic (``fre`` and ``nll`` score types)."""
    from anomalib.data import InferenceBatch
    from torch.nn import functional as F

    features = model.feature_extractor(images)[model.layer]
    if model.pooling_kernel_size > 1:
        features = F.avg_pool2d(input=features, kernel_size=model.pooling_kernel_size)
    flat = features.flatten(1)
    # PCA.transform subtracts the mean in place, so anomalib's FRE compares the *centred* features
    # with their reconstruction (no mean added back): same here, without the in-place op.
    centred = flat - model.pca_model.mean
    projected = centred @ model.pca_model.singular_vectors
    if model.score_type == "nll":
        return InferenceBatch(pred_score=model.gaussian_model.score_samples(projected), anomaly_map=None)
    if model.score_type != "fre":
        raise ValueError(f"unsupported score type: {model.score_type}")
    reconstructed = projected @ model.pca_model.singular_vectors.transpose(-2, -1)
    fre = (centred - reconstructed).square()
    score = fre.sum(dim=1)
    score_map = fre.reshape(-1, *features.shape[1:]).sum(dim=1).unsqueeze(1)
    anomaly_map = F.interpolate(score_map, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return InferenceBatch(pred_score=score, anomaly_map=anomaly_map)

def fre_forward(model: Any, images: Any) -> Any:
    """anomalib ``FREModel.forward`` (eval mode), batch-dynamic."""
    from anomalib.data import InferenceBatch
    from torch.nn import functional as F

    features = model.feature_extractor(images)[model.layer]
    if model.pooling_kernel_size > 1:
        features = F.avg_pool2d(input=features, kernel_size=model.pooling_kernel_size)
    features_in = features.flatten(1)
    features_out = model.fre_model(features_in)
    fre = (features_in - features_out).square().reshape(-1, *features.shape[1:])
    anomaly_map = fre.sum(1)
    score = anomaly_map.sum((1, 2))
    anomaly_map = F.interpolate(anomaly_map.unsqueeze(1), size=images.shape[-2:], mode="bilinear",
                                align_corners=False)
    return InferenceBatch(pred_score=score, anomaly_map=anomaly_map)

def cflow_forward(model: Any, images: Any) -> Any:
    """anomalib ``CflowModel.forward`` in eval mode, batch-dynamic.

    Every fiber (feature vector at one position) goes through the flow independently, so running all
    of them at once gives the same log-likelihoods as anomalib's chunks of ``fiber_batch_size``.
    """
    import torch
    from anomalib.data import InferenceBatch

    model.encoder.eval()
    model.decoders.eval()
    activation = model.encoder(images)
    image_size = images.shape[-2:]
    layer_maps = []
    with _openvino_safe_softplus(model.decoders):
        for layer_idx, layer in enumerate(model.pool_layers):
            layer_maps.append(_cflow_layer_map(model, layer_idx, activation[layer], image_size))
    score_map = torch.zeros_like(layer_maps[0])
    for layer_map in layer_maps:
        score_map = score_map + layer_map
    anomaly_map = score_map.max() - score_map
    pred_score = torch.amax(anomaly_map, dim=(-2, -1))
    return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map)


def _cflow_layer_map(model: Any, layer_idx: int, activations: Any, image_size: Any) -> Any:
    """Log-likelihood map of one CFLOW layer at ``image_size`` (before the sum over layers)."""
    import torch
    from anomalib.models.image.cflow.utils import get_logp, positional_encoding_2d
    from torch.nn import functional as F

    _, channels, height, width = activations.shape  # B x C x H x W
    positions = positional_encoding_2d(model.condition_vector, height, width).to(activations.device)
    positions = positions.reshape(model.condition_vector, height * width).transpose(0, 1)  # HW x P
    c_r = positions.unsqueeze(0).expand(activations.shape[0], -1, -1).reshape(-1, model.condition_vector)
    e_r = activations.permute(0, 2, 3, 1).reshape(-1, channels)  # BHW x C, rows in (b, h, w) order
    p_u, log_jac_det = model.decoders[layer_idx](e_r, [c_r])
    distribution = get_logp(channels, p_u, log_jac_det) / channels
    # AnomalyMapGenerator.compute_anomaly_map: the max is taken over the whole batch, as anomalib
    probabilities = torch.exp(distribution - distribution.max())
    layer_map = probabilities.reshape(-1, height, width)
    layer_map = F.interpolate(layer_map.unsqueeze(1), size=image_size, mode="bilinear", align_corners=True)
    return layer_map.squeeze(1)


def _softplus_beta_half_times_tenth(input_tensor: Any) -> Any:
    """anomalib's ``0.1 * nn.Softplus(beta=0.5)(x)`` written with a beta-1 softplus (bitwise equal in torch).

    OpenVINO's PyTorch frontend (checked with 2026.4) converts ``aten::softplus`` to its ``SoftPlus`` op
    and drops ``beta`` and ``threshold``, which changed CFLOW's flow outputs by several percent.
    """
    from torch.nn import functional as F

    return 0.1 * (F.softplus(0.5 * input_tensor) / 0.5)


@contextlib.contextmanager
def _openvino_safe_softplus(decoders: Any) -> Iterator[None]:
    """Within this block, the flow blocks of ``decoders`` use :func:`_softplus_beta_half_times_tenth`."""
    from anomalib.models.components.flow import all_in_one_block

    original = all_in_one_block._global_scale_softplus_activation  # noqa: SLF001
    blocks = [m for m in decoders.modules() if getattr(m, "global_scale_activation", None) is original]
    for block in blocks:
        block.global_scale_activation = _softplus_beta_half_times_tenth
    try:
        yield
    finally:
        for block in blocks:
            block.global_scale_activation = original


def separable_blurs(model: Any) -> int:
    """Replace every anomalib ``GaussianBlur2d`` inside ``model`` by the same blur done as two 1-D passes.

    anomalib blurs anomaly maps with a full k x k convolution (33 x 33 at PaDiM's and PatchCore's
    sigma 4): 1,089 multiply-adds per pixel, which was 40 % of PaDiM's and PatchCore's OpenVINO f32 time
    at 256 px here. A Gaussian kernel is the outer product of its row and column sums, so a column pass
    then a row pass (66 per pixel) gives the same map up to float rounding. The original ``kernel``
    buffer stays (state dicts are unchanged); kernels that are not rank one are left alone.
    Returns how many blurs were replaced.
    """
    from anomalib.models.components.filters import GaussianBlur2d

    targets = [(name, module) for name, module in model.named_modules() if type(module) is GaussianBlur2d]
    replaced = 0
    for name, blur in targets:
        separable = _separable_blur(blur)
        if separable is None:
            continue
        owner, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(owner) if owner else model, attribute, separable)
        replaced += 1
    return replaced


def _separable_blur(blur: Any) -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    kernel = blur.kernel[0, 0].float()
    column, row = kernel.sum(dim=1), kernel.sum(dim=0)
    if not torch.allclose(torch.outer(column, row), kernel, atol=1e-7, rtol=1e-5):
        return None

    class SeparableGaussianBlur2d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("kernel", blur.kernel)
            channels = blur.channels
            self.register_buffer("column", column.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), persistent=False)
            self.register_buffer("row", row.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), persistent=False)
            self.channels, self.padding, self.border_type = channels, blur.padding, blur.border_type
            self.padding_shape = blur.padding_shape

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            if self.padding == "same":
                images = F.pad(images, self.padding_shape, mode=self.border_type)
            images = F.conv2d(images, self.column.to(images.dtype), groups=self.channels)
            return F.conv2d(images, self.row.to(images.dtype), groups=self.channels)

    return SeparableGaussianBlur2d().to(blur.kernel.device)


def dfm_graph(model: Any, image_size: tuple[int, int] | None = None) -> Callable[[Any], Any]:
    """DFM's ``graph`` hook: :func:`dfm_forward`."""
    del image_size
    return functools.partial(dfm_forward, model)


def fre_graph(model: Any, image_size: tuple[int, int] | None = None) -> Callable[[Any], Any]:
    """FRE's ``graph`` hook: :func:`fre_forward`."""
    del image_size
    return functools.partial(fre_forward, model)


def fre_derive_args(backbone: str | None, image_size: tuple[int, int], init_args: dict[str, Any]) -> dict[str, Any]:
    """FRE's ``derive_args`` hook: ``input_dim`` must equal the flattened, pooled feature size of its layer."""
    from iadbe.models.layers import feature_shape

    layer = init_args.get("layer") or "layer3"
    channels, height, width = feature_shape(backbone or "resnet50", layer, image_size)
    pool = init_args.get("pooling_kernel_size", 2)
    return {"input_dim": channels * (height // pool) * (width // pool)}


def cflow_graph(model: Any, image_size: tuple[int, int] | None = None) -> Callable[[Any], Any]:
    """CFLOW's ``graph`` hook: :func:`cflow_forward`."""
    del image_size
    return functools.partial(cflow_forward, model)
