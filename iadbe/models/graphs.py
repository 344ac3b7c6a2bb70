"""Inference forwards that stay correct for any batch size once traced for export.

``openvino.convert_model`` traces the graph with an example batch of 2. anomalib 2.7's torch forwards
for several models take Python ints from shapes (``len(features)``, ``range(n)``, ``min(...)``,
``view(batch_size, -1)``), so the traced graph bakes in that batch and fails (or silently reads
past the end) at batch 1 or 8 in OpenVINO. The functions below compute exactly the same numbers as
anomalib's eval-mode forwards with tensor ops whose shapes follow the input:

* PatchCore: nearest neighbours and the paper's re-weighting without the chunk loop.
* DFM: ``len(features)`` + ``view(batch_size, -1)`` and PCA's in-place ``features -= mean``.
* FRE: ``len(features_in)`` + ``view(batch_size, -1)``.
* DFKDE: ``len(...)`` + ``view`` and the Gaussian KDE's Python loop over the batch.
* CFLOW: the loop over fixed-size "fiber" chunks (its count and the last ``arange`` are Python
  ints); here all fibers of a layer go through the flow at once, as anomalib itself does under
  ``torch.compile``. Note anomalib's CFLOW normalises its map by maxima over the *whole batch*,
  so a CFLOW score depends on the other images in the same batch; this is kept as is.
  Its flow blocks also use ``Softplus(beta=0.5)``, whose ``beta`` OpenVINO's PyTorch frontend drops
  (checked with 2026.4): the graph computes it as a beta-1 softplus (bitwise equal in torch).

STFPM, GANomaly, DRAEM and SuperSimpleNet trace correctly with anomalib's own forward.

``GRAPH_MODULES`` go further for the input size the graph is built for (PaDiM, PatchCore): exact
rewrites of the costly steps (:func:`padim_graph`, :mod:`iadbe.models.resampling`).
``GRAPH_CHECKS`` refuses, with the reason, a model that cannot give scores (an unfitted DFKDE).
Tested against anomalib's forwards and through OpenVINO in tests/test_model_smoke.py.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator


#: Memory-bank rows per block of PatchCore's nearest-neighbour search (see :func:`patchcore_forward`).
NN_CHUNK_ROWS = 512


def patchcore_forward(model: Any, images: Any, resampler: Any = None) -> Any:
    """anomalib ``PatchcoreModel.forward`` in eval mode, batch-dynamic; with ``resampler`` (a
    :class:`iadbe.models.resampling.MapResampler`) the map is upsampled and blurred by two matmuls."""
    import torch
    from anomalib.data import InferenceBatch
    from torch.nn import functional as F

    features = model.feature_extractor(images)
    features = {layer: model.feature_pooler(feature) for layer, feature in features.items()}
    embedding = model.generate_embedding(features)
    batch, channels, height, width = embedding.shape
    flat = embedding.permute(0, 2, 3, 1).reshape(-1, channels)
    memory_bank = model.memory_bank
    # |x - y|^2 = |x|^2 + (|y|^2 - 2 x.y): the nearest neighbour of x only needs the bracket, so the
    # N x M matrix gets matmuls + bias and a plain minimum; |x|^2, the clamp at 0 and the square root
    # apply to the N minima only (anomalib computes all three on every entry and takes min-with-indices,
    # an OpenVINO TopK: together 45 % of PatchCore's time here). The bank is taken NN_CHUNK_ROWS rows at a
    # time so each block of the matrix is reduced while it is still in cache: 9-15 % faster in OpenVINO
    # f32 than one N x M product (4096 and 20480 rows). Same values up to float rounding.
    scaled_bank = memory_bank.mul(-2)
    bank_norms = memory_bank.pow(2).sum(1)
    bank_size = memory_bank.shape[0]
    block_minima = [
        (torch.matmul(flat, scaled_bank[start:start + NN_CHUNK_ROWS].transpose(0, 1))
         + bank_norms[start:start + NN_CHUNK_ROWS].unsqueeze(0)).amin(1, keepdim=True)
        for start in range(0, bank_size, NN_CHUNK_ROWS)
    ]
    nearest = block_minima[0] if len(block_minima) == 1 else torch.cat(block_minima, 1).amin(1, keepdim=True)
    squared = nearest.squeeze(1) + flat.pow(2).sum(1)
    patch_scores = squared.clamp_min(0).sqrt().reshape(batch, -1)

    max_patches = patch_scores.argmax(1, keepdim=True)
    score = patch_scores.gather(1, max_patches).squeeze(1)
    if model.num_neighbors == 1:
        pred_score = score
    else:
        per_image = flat.reshape(batch, height * width, channels)
        max_features = per_image.gather(1, max_patches.unsqueeze(-1).expand(-1, 1, channels))  # (B, 1, C)
        # the nearest neighbour of each image's worst patch: its row of the matrix, recomputed (B x M)
        best_rows = torch.matmul(max_features.squeeze(1), scaled_bank.transpose(0, 1)) + bank_norms.unsqueeze(0)
        nn_index = best_rows.argmin(1)
        neighbours = min(model.num_neighbors, bank_size)
        _, support = model.euclidean_dist(memory_bank[nn_index], memory_bank).topk(neighbours, largest=False, dim=1)
        distances = model.euclidean_dist(max_features, memory_bank[support])  # (B, 1, k)
        weights = (1 - F.softmax(distances.squeeze(1), 1))[..., 0]
        pred_score = weights * score
    patch_map = patch_scores.reshape(batch, 1, height, width)
    if resampler is not None and resampler.fits(patch_map, images.shape[-2:]):
        anomaly_map = resampler(patch_map)
    else:
        anomaly_map = model.anomaly_map_generator(patch_map, images.shape[-2:])
    return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map)


def patchcore_graph(model: Any, image_size: tuple[int, int]) -> Any:
    """:func:`patchcore_forward` with its anomaly map resampled by matrices fitted for ``image_size``."""
    import torch
    from torch import nn

    from iadbe.models.resampling import fit_map_resampler

    generator = model.anomaly_map_generator
    map_size = _feature_shapes(model, image_size)[model.layers[0]][-2:]
    resampler = fit_map_resampler(lambda scores, size: generator(scores, size), map_size, image_size,
                                  _model_device(model))

    class PatchcoreGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.resampler = model, resampler

        def forward(self, images: torch.Tensor) -> Any:
            return patchcore_forward(self.model, images, self.resampler)

    return PatchcoreGraph()


def _model_device(model: Any) -> Any:
    """Where the model's tensors are (graphs are usually built on the CPU; a GPU-trained model may not be)."""
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _feature_shapes(model: Any, image_size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Shapes of ``model.feature_extractor``'s outputs for one image of ``image_size``, computed in eval
    mode (a train-mode pass would move batch-norm statistics) and the mode restored."""
    import torch

    extractor = model.feature_extractor
    was_training = extractor.training
    extractor.eval()
    try:
        with torch.no_grad():
            features = extractor(torch.zeros(1, 3, *image_size, device=_model_device(model)))
    finally:
        extractor.train(was_training)
    return {layer: tuple(feature.shape) for layer, feature in features.items()}


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

    shapes = _feature_shapes(model, image_size)
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
                                  map_size, image_size, _model_device(model))

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


def dfkde_forward(model: Any, images: Any) -> Any:
    """anomalib ``DfkdeModel.forward`` in eval mode, batch-dynamic (image score only, no map)."""
    import torch
    from anomalib.data import InferenceBatch
    from anomalib.models.components.classification import FeatureScalingMethod
    from torch.nn import functional as F

    classifier = model.classifier
    layer_outputs = model.feature_extractor(images)
    pooled = [F.adaptive_avg_pool2d(input=output, output_size=(1, 1)).flatten(1) for output in layer_outputs.values()]
    features = torch.cat(pooled)  # anomalib concatenates along dim 0 (one layer in practice)
    features = (features - classifier.pca_model.mean) @ classifier.pca_model.singular_vectors
    if classifier.feature_scaling_method == FeatureScalingMethod.NORM:
        features = features / torch.linalg.norm(features, ord=2, dim=1)[:, None]
    elif classifier.feature_scaling_method == FeatureScalingMethod.SCALE:
        features = features / classifier.max_length
    else:
        raise RuntimeError("Unknown pre-processing mode. Available modes are: Normalized and Scale.")
    kde = classifier.kde_model
    features = features @ kde.bw_transform
    distances = ((kde.dataset.unsqueeze(0) - features.unsqueeze(1)) ** 2).sum(dim=2)  # (B, M)
    estimate = (torch.exp(-distances / 2) * kde.norm).mean(dim=1)
    estimate = estimate + 1e-300  # as anomalib (a no-op in float32)
    return InferenceBatch(pred_score=classifier.compute_probabilities(torch.log(estimate)))


def check_dfkde_fitted(model: Any) -> None:
    """Refuse an unfitted DFKDE with the reason (anomalib would fail later with a shape error)."""
    from iadbe.errors import SettingsError

    classifier = model.classifier
    if classifier.pca_model.mean.numel() == 0 or classifier.kde_model.dataset.numel() == 0:
        components = classifier.n_pca_components
        raise SettingsError(
            "DFKDE was not fitted: anomalib's KDEClassifier.fit silently skips fitting when it gets fewer "
            f"feature vectors (one per training image) than n_pca_components ({components}), and its "
            f"Gaussian KDE over {components} PCA components needs at least {components + 1} training images "
            "(fewer make the covariance singular); train on more images or lower n_pca_components"
        )


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


#: anomalib torch model class name -> batch-dynamic forward.
GRAPH_FORWARDS: dict[str, Callable[[Any, Any], Any]] = {
    "PatchcoreModel": patchcore_forward,
    "DFMModel": dfm_forward,
    "FREModel": fre_forward,
    "DfkdeModel": dfkde_forward,
    "CflowModel": cflow_forward,
}


#: anomalib torch model class name -> check run when the graph is built (clear errors, not traced).
GRAPH_CHECKS: dict[str, Callable[[Any], None]] = {"DfkdeModel": check_dfkde_fitted}


#: anomalib torch model class name -> (model, image size) -> graph module fitted for that input size.
GRAPH_MODULES: dict[str, Callable[[Any, tuple[int, int]], Any]] = {
    "PadimModel": lambda model, image_size: None if model.tiler else padim_graph(model, image_size),
    "PatchcoreModel": patchcore_graph,
}


def forward_for(model: Any, image_size: tuple[int, int] | None = None) -> Callable[[Any], Any]:
    """The forward to use in the inference graph for ``model``; with ``image_size`` (the only size the
    graph will see) the size-fitted rewrites of ``GRAPH_MODULES`` apply."""
    name = type(model).__name__
    if name in GRAPH_CHECKS:
        GRAPH_CHECKS[name](model)
    if image_size is not None and name in GRAPH_MODULES:
        module = GRAPH_MODULES[name](model, tuple(int(side) for side in image_size))
        if module is not None:
            return module
    special = GRAPH_FORWARDS.get(name)
    if special is None:
        return model
    return lambda images: special(model, images)
