"""PatchCore's hooks: IADBE's coreset selection (:mod:`iadbe.models.coreset`) and its inference graph.

The registry entry (``iadbe.models.registry``) names the functions at the end of this module.
:func:`patchcore_forward` is anomalib's eval-mode ``PatchcoreModel.forward`` without its Python chunk
loop (which bakes the traced batch into an exported graph); :func:`patchcore_graph` adds the map
resampling fitted for the graph's input size. Tested in tests/test_graph_speedups.py and
tests/test_model_smoke.py.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from iadbe.models.graphs import feature_shapes, model_device


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
    if _eager_f32(flat, scaled_bank):
        nearest = _nearest_bracket_in_place(flat, scaled_bank, bank_norms)
    else:  # traced for export (or autocast): one graph node per block, no out= buffers
        block_minima = [
            (torch.matmul(flat, scaled_bank[start:start + NN_CHUNK_ROWS].transpose(0, 1))
             + bank_norms[start:start + NN_CHUNK_ROWS].unsqueeze(0)).amin(1, keepdim=True)
            for start in range(0, bank_size, NN_CHUNK_ROWS)
        ]
        nearest = block_minima[0] if len(block_minima) == 1 else torch.cat(block_minima, 1).amin(1, keepdim=True)
        nearest = nearest.squeeze(1)
    squared = nearest + flat.pow(2).sum(1)
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


def _eager_f32(flat: Any, scaled_bank: Any) -> bool:
    """True when torch runs this forward eagerly in float32 (not traced for export, no autocast)."""
    import torch

    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if torch.is_autocast_enabled(flat.device.type):
        return False
    return flat.dtype == scaled_bank.dtype == torch.float32


def _nearest_bracket_in_place(flat: Any, scaled_bank: Any, bank_norms: Any) -> Any:
    """``min_j (|y_j|^2 - 2 x.y_j)`` for each row x of ``flat``, the bank taken NN_CHUNK_ROWS rows at a time
    into one reused buffer.

    The list-of-blocks form (the traced path) allocates two N x NN_CHUNK_ROWS temporaries per block (32 MiB
    each at batch 16 and 1024 patches per image), with a small minimum kept between them. glibc then serves
    the 32 MiB blocks from its heap once its mmap threshold has risen to that size, and the kept minima
    fragment it: a 1,000-image PatchCore (a 100k-row bank) grew from 2.2 to 6.6 GB during validation, and
    only in some runs (bench/patchcore_train.py --thousand). Same values as the traced path."""
    import torch

    rows, bank_size = flat.shape[0], scaled_bank.shape[0]
    buffer = flat.new_empty((rows, min(NN_CHUNK_ROWS, bank_size)))
    block_min = flat.new_empty(rows)
    nearest = flat.new_full((rows,), float("inf"))
    for start in range(0, bank_size, NN_CHUNK_ROWS):
        stop = min(start + NN_CHUNK_ROWS, bank_size)
        product = buffer if stop - start == buffer.shape[1] else flat.new_empty((rows, stop - start))
        torch.addmm(bank_norms[start:stop].unsqueeze(0), flat, scaled_bank[start:stop].t(), out=product)
        torch.amin(product, 1, out=block_min)
        torch.minimum(nearest, block_min, out=nearest)
    return nearest


def patchcore_graph(model: Any, image_size: tuple[int, int]) -> Any:
    """:func:`patchcore_forward` with its anomaly map resampled by matrices fitted for ``image_size``."""
    import torch
    from torch import nn

    from iadbe.models.resampling import fit_map_resampler

    generator = model.anomaly_map_generator
    map_size = feature_shapes(model, image_size)[model.layers[0]][-2:]
    resampler = fit_map_resampler(lambda scores, size: generator(scores, size), map_size, image_size,
                                  model_device(model))

    class PatchcoreGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.resampler = model, resampler

        def forward(self, images: torch.Tensor) -> Any:
            return patchcore_forward(self.model, images, self.resampler)

    return PatchcoreGraph()


def iadbe_settings() -> dict[str, Any]:
    """The ``iadbe_settings`` hook: how the memory bank's coreset is selected."""
    from iadbe.models.coreset import DEFAULT_MAX_PATCHES, DEFAULT_METHOD

    return {"coreset_method": DEFAULT_METHOD, "coreset_max_patches": DEFAULT_MAX_PATCHES}


def check_iadbe_settings(extra: dict[str, Any]) -> None:
    from iadbe.models.coreset import check_max_patches, check_method

    if "coreset_method" in extra:
        check_method(extra["coreset_method"])
    if "coreset_max_patches" in extra:
        check_max_patches(extra["coreset_max_patches"])


def after_build(torch_model: Any, extra: dict[str, Any]) -> None:
    """The ``after_build`` hook: select the coreset with ``extra["coreset_method"]``; stored models made
    before that setting existed used the exact greedy (no selection happens when they are rebuilt)."""
    from iadbe.models.coreset import install_fast_coreset

    install_fast_coreset(torch_model, extra.get("coreset_method", "exact"), extra.get("coreset_max_patches"))


def graph(model: Any, image_size: tuple[int, int] | None = None) -> Callable[[Any], Any]:
    """The ``graph`` hook: :func:`patchcore_graph` for a known input size, else :func:`patchcore_forward`."""
    if image_size is not None:
        return patchcore_graph(model, image_size)
    return functools.partial(patchcore_forward, model)
