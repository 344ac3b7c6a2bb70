"""Greedy k-center coreset selection for PatchCore: anomalib's algorithm, and a much faster equivalent.

anomalib 2.7's ``KCenterGreedy`` computes ``torch.linalg.norm(features - center)`` for every
selected point: a fresh N x D temporary per step (about 2.7 selections/s on 215k patches on two
cores here, 15 minutes of a 16-minute PatchCore fit).

Two methods, chosen by the detector setting ``coreset_method`` (recorded in ``iadbe.json``):

``"exact"`` (:func:`k_center_greedy`)
    anomalib's steps unchanged (sparse random projection with eps=0.9, random first centre, farthest
    point next, chosen points' distance set to 0), each update one matrix-vector product on
    precomputed squared norms. tests/test_coreset.py checks the selection against anomalib's.
    Still sequential: each of the ~20,000 steps of a 200-image category streams the whole patch
    matrix (memory-bound), about 500 s on two cores.

``"fast"`` (:func:`batched_k_center_greedy`, the default)
    The same greedy selection, computed in passes. A pass takes the T points farthest from the
    centres so far (the candidates; every other point is at most ``tau``, the (T+1)-th distance,
    away) and runs the greedy on the candidates alone, updating only their distances, for as long
    as the farthest candidate is farther than ``tau``: while it is, it is the farthest of all
    points, so each of these picks is the one the sequential greedy makes. Then one pass updates all
    points with the new centres as a matrix product (compute-bound, not memory-bound). Tire's 200
    images select 20,480 centres in about 16-27 passes. The covering radius equals the sequential
    greedy's (up to ties in float rounding), so it keeps the greedy's guarantee: the k chosen
    points are pairwise at least the covering radius apart, hence the radius is at most twice the
    optimal one's. It also skips anomalib's projection where the projection would *raise* the
    dimension (Johnson-Lindenstrauss' 302 dims at eps=0.9 for 200k patches, above Lite0's 152):
    the greedy then sees true distances, at half the cost.

bench/coreset.py measures the exact method against anomalib, bench/patchcore_train.py whole
trainings with both methods and with stock anomalib.
"""

from __future__ import annotations

from typing import Any, Callable

#: ``coreset_method`` values; "anomalib": anomalib's own ``KCenterGreedy`` (for comparisons only)
CORESET_METHODS = ("fast", "exact", "anomalib")
DEFAULT_METHOD = "fast"
#: candidates per pass of the fast method
DEFAULT_CANDIDATES = 4096
_TILE_ELEMENTS = 1 << 23  # distance tile of the full update, floats (32 MB)

ProgressCallback = Callable[[int, int], None]


def k_center_greedy(features: Any, coreset_size: int, first: int,
                    progress: ProgressCallback | None = None) -> list[int]:
    """Indices of a greedy k-center coreset of ``features`` (N x D), starting at ``first``
    (sequential, anomalib's exact steps)."""
    import torch

    n = _check_size(features, coreset_size)
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
    if progress is not None:
        progress(coreset_size, coreset_size)
    return selected


def batched_k_center_greedy(features: Any, coreset_size: int, first: int,
                            progress: ProgressCallback | None = None,
                            candidates: int = DEFAULT_CANDIDATES) -> list[int]:
    """The greedy k-center coreset of :func:`k_center_greedy`, computed in passes (see the module
    docstring): the same picks up to ties in float rounding, at a fraction of the time.

    ``progress(done, total)`` is called as the full updates advance (they are most of the work).
    """
    import torch

    n = _check_size(features, coreset_size)
    augmented, squared = _augment(features)
    min_sq = torch.full((n,), float("inf"), dtype=torch.float32, device=features.device)
    selected, pending = [int(first)], [int(first)]
    while True:
        _update_all(augmented, squared, min_sq, pending, progress, len(selected) - len(pending), coreset_size)
        if len(selected) >= coreset_size:
            break
        pending = _greedy_on_candidates(augmented[:, :-1], squared, min_sq, min(candidates, n - 1),
                                        coreset_size - len(selected))
        selected += pending
    if progress is not None:
        progress(coreset_size, coreset_size)
    return selected


def _augment(features: Any) -> tuple[Any, Any]:
    """(``[x - mean, 1]`` rows, ``|x - mean|^2``): centred (distances unchanged, less cancellation in
    ``|x|^2 - 2 x.c + |c|^2``), with a column of ones so that one matrix product gives ``|c|^2 - 2 x.c``."""
    import torch

    n, dims = features.shape
    augmented = torch.empty((n, dims + 1), dtype=torch.float32, device=features.device)
    torch.sub(features.float(), features.float().mean(0), out=augmented[:, :dims])
    augmented[:, dims] = 1.0
    centred = augmented[:, :dims]
    return augmented, (centred * centred).sum(1)


def _update_all(augmented: Any, squared: Any, min_sq: Any, centres: list[int],
                progress: ProgressCallback | None, done: int, total: int) -> None:
    """min_sq = min(min_sq, squared distance to each of ``centres``), in row tiles of one matrix product
    (the tile's minimum over centres of ``|c|^2 - 2 x.c``, plus ``|x|^2``)."""
    import torch

    n = augmented.shape[0]
    centre_rows = augmented[centres].clone()
    centre_rows[:, :-1] *= -2.0
    centre_rows[:, -1] = squared[centres]
    centre_rows = centre_rows.t().contiguous()
    rows = max(256, _TILE_ELEMENTS // max(1, len(centres)))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        nearest = torch.mm(augmented[start:stop], centre_rows).amin(1).add_(squared[start:stop])
        torch.minimum(min_sq[start:stop], nearest, out=min_sq[start:stop])
        if progress is not None:
            progress(done + (len(centres) * stop) // n, total)
    min_sq[centres] = 0.0


def _greedy_on_candidates(features: Any, squared: Any, min_sq: Any, count: int, limit: int) -> list[int]:
    """Greedy picks (at most ``limit``) that are provably the sequential greedy's next picks."""
    import torch

    values, indices = torch.topk(min_sq, count + 1, sorted=False)
    outside = int(torch.argmin(values))
    tau = float(values[outside])  # no point outside the candidates is farther than this
    keep = torch.ones(count + 1, dtype=torch.bool, device=values.device)
    keep[outside] = False
    indices, cand_min = indices[keep], values[keep].clone()
    points, points_sq = features[indices], squared[indices]
    distance = torch.empty_like(cand_min)
    picks: list[int] = []
    while len(picks) < limit:
        best = int(torch.argmax(cand_min))
        if not float(cand_min[best]) > tau:
            break
        picks.append(int(indices[best]))
        torch.mv(points, points[best], out=distance)
        distance.mul_(-2).add_(points_sq).add_(points_sq[best])
        torch.minimum(cand_min, distance, out=cand_min)
        cand_min[best] = 0.0
    if not picks:  # ties at tau: the farthest point overall is the next pick
        picks.append(int(torch.argmax(min_sq)))
    return picks


def covering_radius(features: Any, indices: list[int]) -> float:
    """Largest distance from a point of ``features`` to its nearest selected point."""
    import torch

    augmented, squared = _augment(features)
    min_sq = torch.full((features.shape[0],), float("inf"), dtype=torch.float32)
    _update_all(augmented, squared, min_sq, list(indices), None, 0, len(indices))
    return float(min_sq.clamp_min(0).max()) ** 0.5


def _check_size(features: Any, coreset_size: int) -> int:
    n = features.shape[0]
    if not 0 < coreset_size <= n:
        raise ValueError(f"coreset size must be in [1, {n}], got {coreset_size}")
    return n


def project_like_anomalib(embedding: Any) -> Any:
    """anomalib's own sparse random projection (eps=0.9) used before the greedy search."""
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    projection = SparseRandomProjection(eps=0.9)
    projection.fit(embedding)
    return projection.transform(embedding)


def projected_dims(patches: int) -> int:
    """The dimension anomalib's projection (eps=0.9) gives ``patches`` points (Johnson-Lindenstrauss)."""
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    return int(SparseRandomProjection._johnson_lindenstrauss_min_dim(patches, eps=0.9))


def select_coreset(embedding: Any, coreset_size: int, method: str = DEFAULT_METHOD,
                   progress: ProgressCallback | None = None) -> list[int]:
    """Indices of the PatchCore memory bank chosen from ``embedding`` (N x D) by ``method``.

    ``"exact"``: anomalib's projection, then the sequential greedy. ``"fast"``: the projection only
    where it lowers the dimension, then the batched greedy. The first centre is drawn from torch's
    global generator, as anomalib draws it.
    """
    import torch

    if check_method(method) == "anomalib":
        raise ValueError("coreset_method 'anomalib' is anomalib's own PatchcoreModel.subsample_embedding")
    _check_size(embedding, coreset_size)
    if method == "exact":
        features = project_like_anomalib(embedding)
        first = int(torch.randint(high=embedding.shape[0], size=(1,)))
        return k_center_greedy(features, coreset_size, first, progress)
    features = embedding
    if projected_dims(embedding.shape[0]) < embedding.shape[1]:
        features = project_like_anomalib(embedding)
    first = int(torch.randint(high=embedding.shape[0], size=(1,)))
    return batched_k_center_greedy(features, coreset_size, first, progress)


def check_method(method: str) -> str:
    from iadbe.errors import SettingsError

    if method not in CORESET_METHODS:
        raise SettingsError(f"coreset_method must be one of {', '.join(map(repr, CORESET_METHODS))}, got {method!r}")
    return method


def fast_subsample_embedding(model: Any, sampling_ratio: float) -> None:
    """Drop-in for ``PatchcoreModel.subsample_embedding`` (bound to a model instance): the method is
    ``model.coreset_method``; ``model.fit_progress(done, total)``, where set, hears the selection's
    progress."""
    import torch

    if len(model.embedding_store) == 0:
        raise ValueError("Embedding store is empty. Cannot perform coreset selection.")
    embedding = torch.vstack(model.embedding_store)
    model.embedding_store.clear()
    coreset_size = int(embedding.shape[0] * sampling_ratio)
    if coreset_size <= 0:
        raise ValueError(f"coreset size would be 0 for {embedding.shape[0]} patches at ratio {sampling_ratio}")
    indices = select_coreset(embedding, coreset_size, model.coreset_method, model.fit_progress)
    model.memory_bank = embedding[indices]


def install_fast_coreset(patchcore_model: Any, method: str = DEFAULT_METHOD) -> None:
    """Make a PatchcoreModel instance select its memory bank with ``method`` (see the module
    docstring); its ``fit_progress`` attribute (None here) is the selection's progress callback."""
    import types

    patchcore_model.coreset_method = check_method(method)
    if method == "anomalib":
        return  # anomalib's own selection, unchanged (no progress)
    patchcore_model.fit_progress = None
    patchcore_model.subsample_embedding = types.MethodType(fast_subsample_embedding, patchcore_model)
