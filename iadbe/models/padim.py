"""PaDiM's Gaussian fit with a covariance regulariser scaled to the backbone's features.

anomalib 2.7 fits one Gaussian per feature-map location with ``cov + 0.01 * I`` (the paper's value,
chosen for ResNet features). The ``0.01`` is absolute, so how much it regularises depends on the
scale of the backbone's features. EfficientNet-Lite block outputs have no activation and a
per-location variance of about 7.6 on average, so ``0.01`` does almost nothing. On near-uniform
regions (the dark background of MVTec 3D-AD ``tire``) about 19 of the 100 covariance eigenvalues
are below 0.1, the smallest about 0.015. Mahalanobis distance then weights any small difference
in those directions by 1 / (eigenvalue + 0.01), about 40. The test images' background differs
slightly from the training images' (about 0.8 grey levels darker, a little less noise), so every
test image's background outscores the small defects on the tire: pixel AUROC 0.50, map maxima at
the borders, ~20 everywhere.

:func:`fit_gaussian` uses ``eps = relative_eps * mean per-location variance`` (one value for the whole
map, not one per location: scaling each location's eps by its own variance keeps the background
as sensitive as before). With ``relative_eps=0.5`` the tire pixel AUROC is 0.95 and the image
AUROC 0.77-0.79. Distances no longer depend on the feature scale; multiplying the features by k
gives the same maps.

The result is still a plain anomalib ``PadimModel``: only the values of the ``gaussian.mean`` and
``gaussian.inv_covariance`` buffers change, so the state dict, the inference graph and the
OpenVINO export stay the same.

Its registry entry's hooks are at the end of this module: ``n_features`` for the backbone, the fit
above, and :func:`padim_graph`, the inference graph's exact rewrite for its input size.

Use (either one):

* before fitting: ``install_regularized_fit(module.model)``; anomalib's ``Padim.fit()`` (called
  at the end of the training epoch) then runs :func:`fit_gaussian` on the memory bank;
* after a stock fit, or on a stored stock model: ``regularize_fitted(module.model)`` gets the
  covariance back from the stored inverse and re-inverts it with the scaled ``eps``.
"""

from __future__ import annotations

import types
from typing import Any, Callable

from iadbe.models.graphs import feature_shapes, model_device

#: eps = DEFAULT_RELATIVE_EPS * (mean per-location feature variance). Tire test AUROC (pixel/image),
#: lite0, the 100 features of seed 0, cached embeddings: anomalib's 0.01 0.520/0.772, 0.1 0.878/0.784,
#: 0.3 0.937/0.785, 0.5 0.951/0.786, 1 0.961/0.774, 2 0.965/0.758 (training pipeline at 0.5: 0.954/0.769).
DEFAULT_RELATIVE_EPS = 0.5
#: What anomalib adds to each covariance: 0.01 * I in the loop, then 1e-5 * I before inverting.
ANOMALIB_EPS = 0.01 + 1e-5
#: Locations per chunk when building covariances (peak memory ~ chunk * (N + 2C) * C * 8 bytes).
_CHUNK = 256


def mean_variance(embedding: Any) -> float:
    """Per-channel variance (ddof=1) over the images, averaged over channels and locations.

    This is the mean of the diagonal of all per-location covariance matrices, i.e.
    ``trace(cov) / C`` averaged over the feature map.

    Args:
        embedding: (N, C, H, W) training embeddings.
    """
    import torch

    _check_embedding(embedding)
    vectors = embedding.reshape(embedding.shape[0], embedding.shape[1], -1)
    total = 0.0
    for start in range(0, vectors.shape[2], _CHUNK):  # float64 chunk by chunk: no full-size copy
        total += float(vectors[:, :, start : start + _CHUNK].to(torch.float64).var(dim=0, unbiased=True).sum())
    return total / (vectors.shape[1] * vectors.shape[2])


def covariance_eps(scale: float, relative_eps: float = DEFAULT_RELATIVE_EPS, min_eps: float = ANOMALIB_EPS) -> float:
    """The ridge added to every covariance: ``max(relative_eps * scale, min_eps)``."""
    if relative_eps < 0 or min_eps < 0:
        raise ValueError(f"relative_eps and min_eps must be >= 0, got {relative_eps} and {min_eps}")
    eps = max(relative_eps * scale, min_eps)
    if eps <= 0:
        raise ValueError("the covariance regulariser is 0: the covariances would be singular")
    return float(eps)


def fit_gaussian(
    embedding: Any,
    relative_eps: float = DEFAULT_RELATIVE_EPS,
    min_eps: float = ANOMALIB_EPS,
) -> tuple[Any, Any, float]:
    """Per-location Gaussian of PaDiM with ``cov + eps * I``, eps scaled to the features.

    Args:
        embedding: (N, C, H, W) training embeddings (``PadimModel.generate_embedding`` output), N >= 2.
        relative_eps: eps as a share of the mean per-location variance (:func:`mean_variance`);
            0 with ``min_eps=ANOMALIB_EPS`` reproduces anomalib's ``MultiVariateGaussian``.
        min_eps: floor of eps (absolute).
    Returns:
        ``(mean, inv_covariance, eps)``: mean (C, H*W) and inv_covariance (H*W, C, C) float32 on
        the embedding's device, laid out like anomalib's ``MultiVariateGaussian`` buffers.
    """
    import torch

    _check_embedding(embedding)
    batch, channels, height, width = embedding.shape
    eps = covariance_eps(mean_variance(embedding), relative_eps, min_eps)
    vectors = embedding.reshape(batch, channels, height * width)
    mean = vectors.mean(dim=0)
    identity = torch.eye(channels, dtype=torch.float64, device=embedding.device)
    inverses = []
    for start in range(0, height * width, _CHUNK):
        chunk = vectors[:, :, start : start + _CHUNK].to(torch.float64).permute(2, 0, 1)  # (L, N, C)
        centred = chunk - chunk.mean(dim=1, keepdim=True)
        covariance = centred.transpose(1, 2) @ centred / (batch - 1) + eps * identity
        inverses.append(_symmetric_inverse(covariance).to(torch.float32))
    return mean.to(torch.float32), torch.cat(inverses), eps


def regularize_fitted(
    padim_model: Any,
    relative_eps: float = DEFAULT_RELATIVE_EPS,
    min_eps: float = ANOMALIB_EPS,
    fitted_eps: float = ANOMALIB_EPS,
) -> float:
    """Re-regularise an already-fitted ``PadimModel`` in place; return the new eps.

    Recovers each covariance from the stored inverse (``inv(inv_covariance) - fitted_eps * I``,
    in float64), then inverts ``cov + eps * I`` with eps from :func:`covariance_eps`. Use it after
    a stock ``module.fit()``, or on a model loaded from a stock ``weights.safetensors``.
    ``fitted_eps`` is the ridge the stored inverse was made with (anomalib's by default).
    Float32 round-off in the stored inverse is tiny next to the new eps (tests/test_padim.py).
    """
    import torch

    gaussian = padim_model.gaussian
    if gaussian.inv_covariance.numel() == 0:
        raise ValueError("the PaDiM model is not fitted: gaussian.inv_covariance is empty")
    inverse = gaussian.inv_covariance.to(torch.float64)
    channels = inverse.shape[-1]
    identity = torch.eye(channels, dtype=torch.float64, device=inverse.device)
    covariances = []
    for start in range(0, inverse.shape[0], _CHUNK):
        covariances.append(_symmetric_inverse(inverse[start : start + _CHUNK]) - fitted_eps * identity)
    covariance = torch.cat(covariances)
    scale = float(covariance.diagonal(dim1=1, dim2=2).mean())
    eps = covariance_eps(scale, relative_eps, min_eps)
    inverses = [
        _symmetric_inverse(covariance[start : start + _CHUNK] + eps * identity).to(torch.float32)
        for start in range(0, covariance.shape[0], _CHUNK)
    ]
    gaussian.inv_covariance = torch.cat(inverses).to(gaussian.inv_covariance.device)
    padim_model.covariance_eps = eps
    return eps


def regularized_fit(padim_model: Any, relative_eps: float = DEFAULT_RELATIVE_EPS,
                    min_eps: float = ANOMALIB_EPS) -> None:
    """Drop-in for ``PadimModel.fit`` (bound to a model instance by :func:`install_regularized_fit`)."""
    import torch

    if len(padim_model.memory_bank) == 0:
        raise ValueError("Memory bank is empty. Cannot fit the Gaussian.")
    embedding = torch.vstack(list(padim_model.memory_bank))
    padim_model.memory_bank = []
    mean, inverse, eps = fit_gaussian(embedding, relative_eps, min_eps)
    padim_model.gaussian.mean = mean
    padim_model.gaussian.inv_covariance = inverse
    padim_model.covariance_eps = eps


def install_regularized_fit(padim_model: Any, relative_eps: float = DEFAULT_RELATIVE_EPS,
                            min_eps: float = ANOMALIB_EPS) -> None:
    """Make a ``PadimModel`` instance fit with :func:`fit_gaussian` (call before training)."""
    covariance_eps(1.0, relative_eps, min_eps)  # validate now, not at the end of the epoch

    def fit(model: Any) -> None:
        regularized_fit(model, relative_eps, min_eps)

    padim_model.fit = types.MethodType(fit, padim_model)


def _symmetric_inverse(matrices: Any) -> Any:
    """Inverse of a batch of symmetric positive definite matrices (Cholesky), kept symmetric."""
    import torch

    factor, info = torch.linalg.cholesky_ex(matrices)
    if bool((info != 0).any()):
        inverse = torch.linalg.inv(matrices)
    else:
        inverse = torch.cholesky_inverse(factor)
    return (inverse + inverse.transpose(-1, -2)) / 2


def _check_embedding(embedding: Any) -> None:
    if embedding.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) embeddings, got shape {tuple(embedding.shape)}")
    if embedding.shape[0] < 2:
        raise ValueError(f"need at least 2 training images to estimate a covariance, got {embedding.shape[0]}")


def padim_graph(model: Any, image_size: tuple[int, int], strips: int = 3) -> Any:
    """anomalib ``PadimModel.forward`` (eval mode, no tiler) with three exact rewrites:

    * Only the ``n_features`` channels PaDiM keeps are upsampled: they are taken from each layer
      before the nearest-neighbour upsampling, in layer order, and the Gaussian's mean and inverse
      covariance are permuted to match (a Mahalanobis distance does not depend on the order of the
      dimensions as long as both sides use the same one).
    * The inverse covariance is symmetric, so ``d.T A d = sum_i d_i.T (A_ii d_i + 2 sum_j>i A_ij d_j)``
      over ``strips`` blocks of rows reads only its upper block triangle: 2/3 of the 164 MB that
      anomalib's ``(d @ A) * d`` reads per image at 256 px with Lite0 (three strips). That product
      bounds PaDiM's speed (memory bandwidth); 3 strips timed best among 1-5 here.
    * Upsampling + blur of the distance map are two matmuls (:mod:`iadbe.models.resampling`).

    Scores match anomalib's to float rounding (tests/test_graph_speedups.py). Whole graph in OpenVINO,
    batch 1, 2 threads: f32 14.8 -> 11.1 ms, bf16 9.0 -> 6.9 ms (``bench/graph_rewrites.py``).
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    from iadbe.models.resampling import fit_map_resampler

    shapes = feature_shapes(model, image_size)
    widths = [shapes[layer][1] for layer in model.layers]
    starts = [sum(widths[:index]) for index in range(len(widths))]
    order = torch.argsort(model.idx)  # new channel k is anomalib's embedding channel order[k]
    kept = model.idx[order]
    per_layer = [(layer, kept[(kept >= start) & (kept < start + width)] - start)
                 for layer, start, width in zip(model.layers, starts, widths)]
    per_layer = [(layer, channels) for layer, channels in per_layer if len(channels)]

    mean = model.gaussian.mean[order]  # (C, P)
    inverse = model.gaussian.inv_covariance[:, order][:, :, order]  # (P, C, C)
    channels = inverse.shape[-1]
    bounds = [round(channels * index / strips) for index in range(strips + 1)]
    bounds = sorted(set(bounds))
    blocks = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        strip = inverse[:, start:stop, start:].clone()  # rows of this block, columns from its diagonal on
        strip[:, :, stop - start:] *= 2
        blocks.append(strip.transpose(1, 2).contiguous())  # (P, C - start, rows)

    generator = model.anomaly_map_generator
    map_size = shapes[model.layers[0]][-2:]
    resampler = fit_map_resampler(lambda scores, size: generator.smooth_anomaly_map(generator.up_sample(scores, size)),
                                  map_size, image_size, model_device(model))

    class PadimGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.resampler = model, resampler
            self.layers = [layer for layer, _ in per_layer]
            self.bounds = bounds
            for index, (_, layer_channels) in enumerate(per_layer):
                self.register_buffer(f"channels_{index}", layer_channels, persistent=False)
            self.register_buffer("mean", mean, persistent=False)  # a copy: indexing made it
            for index, block in enumerate(blocks):
                self.register_buffer(f"strip_{index}", block, persistent=False)

        def forward(self, images: torch.Tensor) -> Any:
            from anomalib.data import InferenceBatch

            features = self.model.feature_extractor(images)
            first = features[self.model.layers[0]]
            parts = []
            for index, layer in enumerate(self.layers):
                part = features[layer].index_select(1, getattr(self, f"channels_{index}"))
                if part.shape[-2:] != first.shape[-2:]:
                    part = F.interpolate(part, size=first.shape[-2:], mode="nearest")
                parts.append(part)
            embedding = torch.cat(parts, 1)
            batch, channels, height, width = embedding.shape
            delta = (embedding.reshape(batch, channels, height * width) - self.mean).permute(2, 0, 1)  # (P, B, C)
            squared = 0
            for index, (start, stop) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
                partial = torch.matmul(delta[:, :, start:], getattr(self, f"strip_{index}"))  # (P, B, rows)
                squared = squared + (partial * delta[:, :, start:stop]).sum(2)
            distances = squared.permute(1, 0).reshape(batch, 1, height, width).clamp(0).sqrt()
            if self.resampler is not None and self.resampler.fits(distances, images.shape[-2:]):
                anomaly_map = self.resampler(distances)
            else:
                generator = self.model.anomaly_map_generator
                anomaly_map = generator.smooth_anomaly_map(generator.up_sample(distances, images.shape[-2:]))
            return InferenceBatch(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)

    return PadimGraph()


def derive_args(backbone: str | None, image_size: tuple[int, int], init_args: dict[str, Any]) -> dict[str, Any]:
    """The ``derive_args`` hook: ``n_features``. The paper keeps 100 of resnet18's 448 dims (550 of WRN-50's);
    other backbones keep 100 too, or all of them where they have fewer (a covariance stays invertible)."""
    del image_size
    if backbone in {"resnet18", "resnet18.tv_in1k"}:
        return {"n_features": 100}
    if backbone in {"wide_resnet50_2", "wide_resnet50_2.tv_in1k"}:
        return {"n_features": 550}
    if backbone is None:
        return {}
    from iadbe.models.layers import feature_info

    channels = {name: chs for name, chs, _ in feature_info(backbone)}
    total = sum(channels[layer] for layer in init_args["layers"])
    return {"n_features": max(1, min(total, 100))}


def iadbe_settings() -> dict[str, Any]:
    """The ``iadbe_settings`` hook: the covariance regulariser, relative to the features' variance."""
    return {"padim_relative_eps": DEFAULT_RELATIVE_EPS}


def after_build(torch_model: Any, extra: dict[str, Any]) -> None:
    """The ``after_build`` hook: anomalib's fixed 0.01 covariance eps is far too small for EfficientNet
    features (module docstring), so the model fits with :func:`fit_gaussian`."""
    install_regularized_fit(torch_model, extra.get("padim_relative_eps", DEFAULT_RELATIVE_EPS))


def graph(model: Any, image_size: tuple[int, int] | None = None) -> Callable[[Any], Any] | Any:
    """The ``graph`` hook: :func:`padim_graph` for a known input size without a tiler, else anomalib's forward."""
    if image_size is None or model.tiler:
        return model
    return padim_graph(model, image_size)
