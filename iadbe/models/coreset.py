"""Greedy k-center coreset selection for PatchCore, the same algorithm as anomalib's, much faster.

anomalib 2.7's ``KCenterGreedy`` computes ``torch.linalg.norm(features - center)`` for every
selected point: a fresh N x D temporary per step (about 2.7 selections/s on 215k patches on two
cores here, 15 minutes of a 16-minute PatchCore fit). We keep the same steps (sparse random
projection with eps=0.9, random first centre, farthest point next, chosen points' distance set to
0) and compute each update as one matrix-vector product on precomputed squared norms, with the
running minimum updated in place. Same kind of coreset; tests/test_coreset.py checks the
selection against anomalib's on the same projected features, and bench/coreset.py measures the
speedup.
"""

from __future__ import annotations

from typing import Any, Callable


def k_center_greedy(features: Any, coreset_size: int, first: int,
                    progress: Callable[[int, int], None] | None = None) -> list[int]:
    """Indices of a greedy k-center coreset of ``features`` (N x D), starting at ``first``."""
    import torch

    n = features.shape[0]
    if not 0 < coreset_size <= n:
        raise ValueError(f"coreset size must be in [1, {n}], got {coreset_size}")
    features = features.float().contiguous()
    squared = (features * features).sum(1)
    min_sq = torch.full((n,), float("inf"), dtype=torch.float32, device=features.device)
    distance = torch.empty_like(min_sq)
    selected = [int(first)]
    index = int(first)
    step = max(1, coreset_size // 100)
    for count in range(1, coreset_size):
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, the same ordering as anomalib's norm
        torch.mv(features, features[index], out=distance)
        distance.mul_(-2).add_(squared).add_(squared[index])
        torch.minimum(min_sq, distance, out=min_sq)
        min_sq[index] = 0.0
        index = int(torch.argmax(min_sq))
        min_sq[index] = 0.0
        selected.append(index)
        if progress is not None and count % step == 0:
            progress(count, coreset_size)
    return selected


def project_like_anomalib(embedding: Any) -> Any:
    """anomalib's own sparse random projection (eps=0.9) used before the greedy search."""
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    projection = SparseRandomProjection(eps=0.9)
    projection.fit(embedding)
    return projection.transform(embedding)


def fast_subsample_embedding(model: Any, sampling_ratio: float) -> None:
    """Drop-in for ``PatchcoreModel.subsample_embedding`` (bound to a model instance)."""
    import torch

    if len(model.embedding_store) == 0:
        raise ValueError("Embedding store is empty. Cannot perform coreset selection.")
    embedding = torch.vstack(model.embedding_store)
    model.embedding_store.clear()
    coreset_size = int(embedding.shape[0] * sampling_ratio)
    if coreset_size <= 0:
        raise ValueError(f"coreset size would be 0 for {embedding.shape[0]} patches at ratio {sampling_ratio}")
    features = project_like_anomalib(embedding)
    first = int(torch.randint(high=embedding.shape[0], size=(1,)))
    indices = k_center_greedy(features, coreset_size, first, getattr(model, "coreset_progress", None))
    model.memory_bank = embedding[indices]


def install_fast_coreset(patchcore_model: Any) -> None:
    """Make a PatchcoreModel instance use :func:`fast_subsample_embedding`."""
    import types

    patchcore_model.subsample_embedding = types.MethodType(fast_subsample_embedding, patchcore_model)
