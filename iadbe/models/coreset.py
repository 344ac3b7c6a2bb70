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
    points, so each of these picks is the one the sequential greedy makes. Each point keeps an upper
    bound of its distance (its distance to the centres it has been compared with) and is compared
    with the newer centres only when its bound is among the largest (lazily: a bound below the
    threshold cannot hide one of the T farthest points, since distances only shrink), one matrix
    product per row tile (compute-bound, not memory-bound). Points close to a centre drop out of the
    work early: on 200k real patches (capsules, juice_bottle, transistor) 10.4 vs 17.3 CPU s against
    updating every point after every pass (one run on a loaded machine), 19,936 of 20,000 picks the
    same, and no N x D copy.
    Tire's 200 images select 20,480 centres in about 16-27 passes. The covering radius equals
    the sequential greedy's (up to ties in float rounding), so it keeps the greedy's guarantee: the k
    chosen points are pairwise at least the covering radius apart, hence the radius is at most twice
    the optimal one's.

    Up to ``DEFAULT_PROJECTED_PATCHES`` patches (512 images at 256 px) it selects on anomalib's own
    projection, drawn as the exact method draws it, so it picks what anomalib's and the exact method's
    greedy pick: the same memory bank and the same metrics (issue 24 asks for equal quality; checked on
    real categories, docs/benchmark/patchcore_coreset). Above, it keeps the projection only where it
    lowers the dimension: Johnson-Lindenstrauss' eps=0.9 bound *raises* Lite0's 152 dims (301 at 200k
    patches, 341 at a million), and at a million patches the projected copy alone would take 1.4 GB and
    the greedy about a third longer (1.27x at 200 images), against the 1,000-image targets of 300 s and
    4 GB. The greedy then sees true distances: its bank covers the patches 8-11 % more tightly, and the
    metrics differ from the exact method's by about as much as the exact method's own differ between two
    seeds (docs/benchmark/patchcore_coreset).

    Above ``coreset_max_patches`` patches (recorded in ``iadbe.json``; default 1,048,576, 1,024 images
    at 256 px) the greedy runs on a seeded random sample of that many patches (at least twice the
    coreset), still choosing 10 % of *all* patches: the work grows with patches x centres (a
    1,000-image category, a million patches and 100k centres, costs about 25 times a 200-image one).
    The guarantee then holds for the sample only (the picks are its greedy k-center); the other
    patches are covered only as far as the sample covers them: on 204,800 real patches a 40 % sample
    cut the selection's CPU time 2.8x but raised the covering radius over all patches by 33 % (28.9 ->
    38.4), so the default keeps 1,000-image categories on the exact-equivalent greedy and samples
    only above (docs/NOTES.md; bench/patchcore_train.py ``--quality-methods fast sampled``).

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
#: patches the fast method selects from at most (a random sample above): 1,024 images at 256 px
DEFAULT_MAX_PATCHES = 1_048_576
#: up to this many patches the fast method selects on anomalib's projection, as the exact method does
#: (512 images at 256 px; the projected copy stays under 0.7 GB)
DEFAULT_PROJECTED_PATCHES = 524_288
_TILE_ELEMENTS = 1 << 23  # distance tile of an update, floats (32 MB)
_MAX_TILE_ROWS = 1 << 16  # rows per tile at most (the gathered rows: 40 MB at 152 dims)
_OVERSAMPLE = 4  # bounds brought up to date per pass, at first, per candidate

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

    ``progress(done, total)`` is called after each pass with the centres chosen so far.
    """
    import torch

    n = _check_size(features, coreset_size)
    points = _Points(features)
    # upper[i] >= point i's squared distance to the chosen centres; exact for its first seen[i] centres
    upper = torch.full((n,), float("inf"), dtype=torch.float32, device=points.features.device)
    seen = torch.zeros(n, dtype=torch.int64, device=upper.device)
    selected = [int(first)]
    count = min(candidates, n - 1)
    while len(selected) < coreset_size:
        _refresh_largest(points, upper, seen, selected, count + 1)
        pending = _greedy_on_candidates(points, upper, count, coreset_size - len(selected))
        selected += pending
        upper[pending] = 0.0
        if progress is not None:
            progress(len(selected), coreset_size)
    if progress is not None:
        progress(coreset_size, coreset_size)
    return selected


class _Points:
    """The features as rows centred on their mean (distances unchanged, less cancellation in
    ``|x|^2 - 2 x.c + |c|^2``), made on demand a tile at a time: no second N x D copy."""

    def __init__(self, features: Any) -> None:
        import torch

        self.features = features.float().contiguous()
        self.mean = self.features.mean(0)
        self.squared = torch.empty(self.features.shape[0], dtype=torch.float32, device=self.features.device)
        for start in range(0, len(self.squared), _MAX_TILE_ROWS):
            centred = self.features[start:start + _MAX_TILE_ROWS] - self.mean
            torch.sum(centred * centred, 1, out=self.squared[start:start + _MAX_TILE_ROWS])

    def rows(self, indices: Any) -> Any:
        return self.features[indices] - self.mean

    def min_squared_distance(self, rows: Any, centres: list[int]) -> Any:
        """For each of ``rows`` (indices), the least squared distance to ``centres``: per row tile one
        matrix product ``[x, 1] @ [-2c, |c|^2]`` (a pure GEMM), its minimum over centres, plus ``|x|^2``."""
        import torch

        dims = self.features.shape[1]
        weights = torch.empty((dims + 1, len(centres)), dtype=torch.float32, device=self.features.device)
        weights[:dims] = self.rows(centres).t().mul_(-2.0)
        weights[dims] = self.squared[centres]
        tile = max(256, min(_MAX_TILE_ROWS, _TILE_ELEMENTS // max(1, len(centres))))
        buffer = torch.empty((min(tile, len(rows)), dims + 1), dtype=torch.float32, device=weights.device)
        buffer[:, dims] = 1.0
        product = torch.empty((len(buffer), len(centres)), dtype=torch.float32, device=weights.device)
        nearest = torch.empty(len(rows), dtype=torch.float32, device=weights.device)
        for start in range(0, len(rows), tile):
            part = rows[start:start + tile]
            size = len(part)
            torch.sub(self.features[part], self.mean, out=buffer[:size, :dims])
            torch.mm(buffer[:size], weights, out=product[:size])
            torch.amin(product[:size], 1, out=nearest[start:start + size])
        return nearest.add_(self.squared[rows])


def _refresh_largest(points: _Points, upper: Any, seen: Any, selected: list[int], needed: int) -> None:
    """Make the ``needed`` largest bounds exact for all of ``selected`` (every other bound is then at
    most the smallest of them). Lazy: a bound already below a threshold cannot be among the largest,
    so only bounds at or above it are brought up to date, each with the centres it has not seen; the
    threshold starts at the ``needed * 4``-th largest bound and is lowered until ``needed`` exact
    bounds stay above it."""
    import torch

    now, n = len(selected), len(upper)
    ranked = needed * _OVERSAMPLE
    while True:
        everything = ranked >= n
        threshold = -float("inf") if everything else float(torch.topk(upper, ranked, sorted=False).values.min())
        stale = torch.nonzero((upper >= threshold) & (seen < now)).flatten()
        if len(stale):
            _bring_up_to_date(points, upper, seen, stale, selected)
        if everything or int((upper >= threshold).sum()) >= needed:
            return
        ranked *= 2


def _bring_up_to_date(points: _Points, upper: Any, seen: Any, stale: Any, selected: list[int]) -> None:
    """Lower the bounds of ``stale`` rows by the centres each has not seen (grouped by what they saw)."""
    import torch

    now = len(selected)
    seen_by = seen[stale]
    for start in torch.unique(seen_by).tolist():
        rows = stale[seen_by == start]
        nearest = points.min_squared_distance(rows, selected[start:now])
        upper.index_copy_(0, rows, torch.minimum(upper[rows], nearest))
    seen[stale] = now


def _greedy_on_candidates(points: _Points, upper: Any, count: int, limit: int) -> list[int]:
    """Greedy picks (at most ``limit``) that are provably the sequential greedy's next picks: the
    ``count + 1`` largest bounds of ``upper`` must be exact."""
    import torch

    values, indices = torch.topk(upper, count + 1, sorted=False)
    outside = int(torch.argmin(values))
    tau = float(values[outside])  # no point outside the candidates is farther than this
    keep = torch.ones(count + 1, dtype=torch.bool, device=values.device)
    keep[outside] = False
    indices, cand_min = indices[keep], values[keep].clone()
    rows, rows_sq = points.rows(indices), points.squared[indices]
    distance = torch.empty_like(cand_min)
    picks: list[int] = []
    while len(picks) < limit:
        best = int(torch.argmax(cand_min))
        if not float(cand_min[best]) > tau:
            break
        picks.append(int(indices[best]))
        torch.mv(rows, rows[best], out=distance)
        distance.mul_(-2).add_(rows_sq).add_(rows_sq[best])
        torch.minimum(cand_min, distance, out=cand_min)
        cand_min[best] = 0.0
    if not picks:  # ties at tau: the farthest point overall is the next pick
        picks.append(int(torch.argmax(upper)))
    return picks


def covering_radius(features: Any, indices: list[int]) -> float:
    """Largest distance from a point of ``features`` to its nearest selected point."""
    import torch

    points = _Points(features)
    nearest = points.min_squared_distance(torch.arange(features.shape[0], device=points.features.device),
                                          list(indices))
    return float(nearest.clamp_min(0).max()) ** 0.5


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
                   progress: ProgressCallback | None = None, max_patches: int | None = None,
                   projected_patches: int = DEFAULT_PROJECTED_PATCHES) -> list[int]:
    """Indices of the PatchCore memory bank chosen from ``embedding`` (N x D) by ``method``.

    ``"exact"``: anomalib's projection, then the sequential greedy. ``"fast"``: where N is above
    ``max_patches``, a random ``max_patches`` of the patches (at least twice ``coreset_size``), not all
    of them; then anomalib's projection, up to ``projected_patches`` points always (the exact method's
    picks, up to ties in float rounding), above only where it lowers the dimension; then the batched
    greedy (see the module docstring). The random draws (sample, projection, first centre) come from
    torch's and numpy's global generators, as anomalib draws them.
    """
    import torch

    if check_method(method) == "anomalib":
        raise ValueError("coreset_method 'anomalib' is anomalib's own PatchcoreModel.subsample_embedding")
    n = _check_size(embedding, coreset_size)
    if method == "exact":
        features = project_like_anomalib(embedding)
        first = int(torch.randint(high=n, size=(1,)))
        return k_center_greedy(features, coreset_size, first, progress)
    sample = None
    if max_patches is not None and n > max(max_patches, 2 * coreset_size):
        sample = torch.randperm(n)[:max(max_patches, 2 * coreset_size)].sort().values
        embedding = embedding[sample]
    features = embedding
    if embedding.shape[0] <= projected_patches or projected_dims(embedding.shape[0]) < embedding.shape[1]:
        features = project_like_anomalib(embedding)
    first = int(torch.randint(high=embedding.shape[0], size=(1,)))
    selected = batched_k_center_greedy(features, coreset_size, first, progress)
    return selected if sample is None else sample[selected].tolist()


def check_max_patches(max_patches: int | None) -> int | None:
    from iadbe.errors import SettingsError

    if max_patches is not None and (isinstance(max_patches, bool) or not isinstance(max_patches, int)
                                    or max_patches < 1):
        raise SettingsError(f"coreset_max_patches must be a positive whole number, got {max_patches!r}")
    return max_patches


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
    indices = select_coreset(embedding, coreset_size, model.coreset_method, model.fit_progress,
                             getattr(model, "coreset_max_patches", None))
    model.memory_bank = embedding[indices]


def install_fast_coreset(patchcore_model: Any, method: str = DEFAULT_METHOD, max_patches: int | None = None) -> None:
    """Make a PatchcoreModel instance select its memory bank with ``method`` (the fast one from at most
    ``max_patches`` patches; see the module docstring); its ``fit_progress`` attribute (None here) is the
    selection's progress callback."""
    import types

    patchcore_model.coreset_method = check_method(method)
    patchcore_model.coreset_max_patches = check_max_patches(max_patches)
    if method == "anomalib":
        return  # anomalib's own selection, unchanged (no progress)
    patchcore_model.fit_progress = None
    patchcore_model.subsample_embedding = types.MethodType(fast_subsample_embedding, patchcore_model)
