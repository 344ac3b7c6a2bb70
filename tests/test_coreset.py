"""IADBE's greedy coresets: the exact one selects what anomalib's KCenterGreedy selects, the fast (batched)
one covers like it."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _clustered(n: int, dims: int, clusters: int, seed: int) -> "torch.Tensor":
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(clusters, dims, generator=generator) * 4.0
    labels = torch.randint(clusters, (n,), generator=generator)
    scales = torch.rand(clusters, 1, generator=generator) + 0.2
    return means[labels] + torch.randn(n, dims, generator=generator) * scales[labels]


def _anomalib_selection(features: "torch.Tensor", size: int, first: int) -> list[int]:
    from anomalib.models.components.sampling import KCenterGreedy

    stock = KCenterGreedy(embedding=features, sampling_ratio=0.5)
    stock.features = features
    stock.reset_distances()
    index, chosen = torch.tensor(first), [first]
    for _ in range(size - 1):
        stock.update_distances(cluster_center=index)
        index = stock.get_new_idx()
        stock.min_distances.scatter_(0, index.unsqueeze(0).unsqueeze(1), 0.0)
        chosen.append(int(index))
    return chosen


def _exact_steps(features: "torch.Tensor", chosen: list[int]) -> tuple[list[float], list[float]]:
    """For each step k >= 1, in float64: the distance of the k-th chosen point to the points chosen before
    it, and the covering radius of those earlier points (the largest distance any point has to them)."""
    exact = features.double()
    nearest = torch.full((exact.shape[0],), float("inf"), dtype=torch.float64)
    picked, radii = [], []
    for k, index in enumerate(chosen):
        if k:
            picked.append(float(nearest[index]))
            radii.append(float(nearest.max()))
        nearest = torch.minimum(nearest, (exact - exact[index]).norm(dim=1))
    return picked, radii + [float(nearest.max())]


# Both selections run in float32 (IADBE: |x|^2 - 2x.c + |c|^2 by matrix-vector product; anomalib: the norm of
# x - c), so two points whose distances differ by float32 rounding are a tie that each CPU's kernels break
# their own way (AMD EPYC and Intel AMX pick differently on the 64-dim case). The tests therefore compare what
# a k-center coreset is for, in float64: every step picks a farthest point (to within RTOL_STEP, 100x the
# float32 error of |x|^2 - 2x.c + |c|^2 relative to d^2 on these features, where |x|^2 is at most ~10 d^2),
# the distance picked at each step, and the covering radius reached.
RTOL_STEP = 1e-4
RTOL_AFTER_TIE = 1e-3  # once a tie was broken the other way the two runs go on from different points


@pytest.mark.parametrize(("n", "dims", "clusters", "size"), [(3000, 24, 12, 300), (2000, 64, 1, 200)])
def test_selection_equals_anomalib(n: int, dims: int, clusters: int, size: int) -> None:
    from iadbe.models.coreset import k_center_greedy

    features = _clustered(n, dims, clusters, seed=n)
    ours, stock = k_center_greedy(features, size, first=7), _anomalib_selection(features, size, first=7)
    assert len(ours) == len(set(ours)) == size and ours[0] == 7
    picked, radii = _exact_steps(features, ours)
    stock_picked, stock_radii = _exact_steps(features, stock)
    for step, (distance, radius) in enumerate(zip(picked, radii)):
        assert distance >= radius * (1 - RTOL_STEP), f"step {step + 1} picked {distance}, the farthest is {radius}"
    # identical until the first tie, which must be a tie
    split = next((k for k, (a, b) in enumerate(zip(ours, stock)) if a != b), size)
    if split < size:
        assert picked[split - 1] == pytest.approx(stock_picked[split - 1], rel=RTOL_STEP)
    assert picked == pytest.approx(stock_picked, rel=RTOL_AFTER_TIE)
    assert radii[-1] == pytest.approx(stock_radii[-1], rel=RTOL_AFTER_TIE)


def test_selection_check_catches_a_non_greedy_pick() -> None:
    """The float64 check above fails for a selection that is not farthest-first."""
    from iadbe.models.coreset import k_center_greedy

    features = _clustered(2000, 64, 1, seed=2000)
    selection = k_center_greedy(features, 50, first=7)
    picked, radii = _exact_steps(features, selection[:25] + selection[26:] + [selection[25]])
    assert any(d < r * (1 - RTOL_STEP) for d, r in zip(picked, radii))


def test_refuses_bad_size() -> None:
    from iadbe.models.coreset import k_center_greedy

    with pytest.raises(ValueError, match="coreset size"):
        k_center_greedy(torch.zeros(10, 3), 0, first=0)


def _radius_and_separation(features: "torch.Tensor", chosen: list[int]) -> tuple[float, float]:
    """Covering radius of ``chosen`` over ``features``, and the smallest distance between two chosen points."""
    centres = features[chosen]
    radius = float(torch.cdist(features, centres).amin(1).max())
    between = torch.cdist(centres, centres)
    between.fill_diagonal_(float("inf"))
    return radius, float(between.min())


@pytest.mark.parametrize(("n", "dims", "clusters", "size", "candidates"),
                         [(3000, 24, 12, 300, 4096), (3000, 24, 12, 300, 16), (2000, 64, 1, 200, 64),
                          (4000, 8, 40, 600, 128)])
def test_batched_greedy_covers_like_the_sequential_one(n: int, dims: int, clusters: int, size: int,
                                                       candidates: int) -> None:
    """The batched greedy makes the sequential greedy's picks (up to float ties), so the same covering radius
    and the greedy's guarantee: the chosen points lie pairwise at least the covering radius apart (so the
    radius is at most twice the best possible with ``size`` centres)."""
    from iadbe.models.coreset import batched_k_center_greedy, covering_radius, k_center_greedy

    features = _clustered(n, dims, clusters, seed=n + dims)
    fast = batched_k_center_greedy(features, size, first=3, candidates=candidates)
    exact = k_center_greedy(features, size, first=3)
    assert len(fast) == len(set(fast)) == size and fast[0] == 3
    fast_radius, separation = _radius_and_separation(features, fast)
    exact_radius, _ = _radius_and_separation(features, exact)
    assert fast_radius <= exact_radius * 1.01
    assert separation >= fast_radius * 0.999
    assert covering_radius(features, fast) == pytest.approx(fast_radius, rel=1e-3)


@pytest.mark.parametrize(("n", "dims", "clusters", "size", "candidates"),
                         [(3000, 24, 12, 300, 16), (2500, 64, 1, 250, 64), (4000, 8, 40, 500, 32)])
def test_batched_greedy_picks_a_farthest_point_at_every_step(n: int, dims: int, clusters: int, size: int,
                                                             candidates: int) -> None:
    """The passes bring only the largest distance bounds up to date (lazily); every pick must still be a
    farthest point from the ones before it, checked in float64 (to RTOL_STEP: no CPU's float32 rounding
    decides the outcome). Few candidates per pass, so that many passes and stale bounds are exercised."""
    from iadbe.models.coreset import batched_k_center_greedy

    features = _clustered(n, dims, clusters, seed=3 * n + dims)
    chosen = batched_k_center_greedy(features, size, first=5, candidates=candidates)
    assert len(chosen) == len(set(chosen)) == size and chosen[0] == 5
    picked, radii = _exact_steps(features, chosen)
    for step, (distance, radius) in enumerate(zip(picked, radii)):
        assert distance >= radius * (1 - RTOL_STEP), f"step {step + 1} picked {distance}, the farthest is {radius}"


def test_batched_greedy_reports_progress_to_the_end() -> None:
    from iadbe.models.coreset import batched_k_center_greedy

    calls: list[tuple[int, int]] = []
    batched_k_center_greedy(_clustered(3000, 16, 5, seed=1), 300, first=0, progress=lambda d, t: calls.append((d, t)),
                            candidates=64)
    done = [d for d, _ in calls]
    assert len(calls) > 3 and {t for _, t in calls} == {300}
    assert done == sorted(done) and done[-1] == 300


def test_fast_method_picks_what_the_exact_method_picks_up_to_the_projection_limit() -> None:
    """Up to ``projected_patches`` the fast method selects on anomalib's projection, drawn as the exact
    method draws it, so its batched greedy makes the exact method's picks (up to float ties, which differ
    between CPUs: hence the same projection and the same covering radius are checked, not pick for pick).
    Above, where the projection would raise the dimension (Lite0's 152 dims; 24 here), it selects on the
    features as they are."""
    from iadbe.models.coreset import (batched_k_center_greedy, k_center_greedy, project_like_anomalib,
                                      projected_dims, select_coreset)

    embedding = _clustered(2000, 24, 6, seed=5)
    assert projected_dims(2000) > 24

    def seeded(draw):
        torch.manual_seed(11)
        np.random.seed(11)  # anomalib's projection draws its columns from numpy's global generator
        return draw()

    picks = {name: seeded(lambda: select_coreset(embedding, 100, method, projected_patches=limit))
             for name, method, limit in (("exact", "exact", 0), ("fast", "fast", 2000), ("above", "fast", 1999))}
    projected, first = seeded(lambda: (project_like_anomalib(embedding), int(torch.randint(high=2000, size=(1,)))))
    assert picks["exact"] == k_center_greedy(projected, 100, first)
    assert picks["fast"] == batched_k_center_greedy(projected, 100, first)  # the exact method's projection
    fast_radius, separation = _radius_and_separation(projected, picks["fast"])
    exact_radius, _ = _radius_and_separation(projected, picks["exact"])
    assert fast_radius <= exact_radius * 1.01 and separation >= fast_radius * 0.999
    first_above = seeded(lambda: int(torch.randint(high=2000, size=(1,))))
    assert picks["above"] == batched_k_center_greedy(embedding, 100, first_above)
    assert picks["above"] != picks["exact"]


def test_coreset_method_is_a_recorded_setting() -> None:
    from iadbe.errors import SettingsError
    from iadbe.models import resolve_config

    config = resolve_config("patchcore", "tf_efficientnet_lite0")
    assert config.extra["coreset_method"] == "fast"
    exact = resolve_config("patchcore", "tf_efficientnet_lite0", coreset_method="exact")
    assert exact.extra["coreset_method"] == "exact" and "coreset_method" not in exact.init_args
    assert exact.to_dict()["extra"]["coreset_method"] == "exact"
    with pytest.raises(SettingsError, match="its settings: .*coreset_method, coreset_sampling_ratio"):
        resolve_config("patchcore", "tf_efficientnet_lite0", coreset_methd="exact")
    with pytest.raises(SettingsError, match="coreset_method must be one of 'fast', 'exact', 'anomalib'"):
        resolve_config("patchcore", "tf_efficientnet_lite0", coreset_method="greedy")


def test_fast_method_selects_from_a_seeded_sample_above_the_limit() -> None:
    """Above ``max_patches`` the fast method runs the greedy on a random sample: the same sample and picks
    for the same seed, another for another seed, every pick a row of the full embedding inside the
    sample, and the picks a greedy k-center of the sample (pairwise at least the sample's covering radius
    apart: at most twice the best radius for the sample)."""
    from iadbe.models.coreset import batched_k_center_greedy, select_coreset

    embedding = _clustered(6000, 16, 10, seed=9)
    limit, size = 2000, 300
    runs = []
    for seed in (4, 4, 5):
        torch.manual_seed(seed)
        runs.append(select_coreset(embedding, size, "fast", max_patches=limit, projected_patches=0))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    torch.manual_seed(4)
    sample = torch.randperm(6000)[:limit].sort().values
    first = int(torch.randint(high=limit, size=(1,)))
    assert runs[0] == sample[batched_k_center_greedy(embedding[sample], size, first)].tolist()
    assert len(set(runs[0])) == size and set(runs[0]) <= set(sample.tolist())
    radius, separation = _radius_and_separation(embedding[sample], [int(i) for i in
                                                                    torch.searchsorted(sample, torch.tensor(runs[0]))])
    assert separation >= radius * 0.999


def test_fast_method_uses_every_patch_up_to_the_limit() -> None:
    """At or below the limit nothing is sampled: the picks are the greedy's over all patches. A limit
    under twice the coreset size samples twice the coreset size."""
    from iadbe.models.coreset import batched_k_center_greedy, select_coreset

    embedding = _clustered(3000, 16, 8, seed=10)
    picks = []
    for limit in (None, 3000, 10**9):
        torch.manual_seed(2)
        picks.append(select_coreset(embedding, 200, "fast", max_patches=limit, projected_patches=0))
    assert picks[0] == picks[1] == picks[2]
    torch.manual_seed(2)
    small = select_coreset(embedding, 200, "fast", max_patches=100, projected_patches=0)
    torch.manual_seed(2)
    sample = torch.randperm(3000)[:400].sort().values
    first = int(torch.randint(high=400, size=(1,)))
    assert small == sample[batched_k_center_greedy(embedding[sample], 200, first)].tolist()


def test_coreset_limit_is_a_recorded_setting() -> None:
    from iadbe.errors import SettingsError
    from iadbe.models import resolve_config
    from iadbe.models.coreset import DEFAULT_MAX_PATCHES

    assert resolve_config("patchcore", "tf_efficientnet_lite0").extra["coreset_max_patches"] == DEFAULT_MAX_PATCHES
    unlimited = resolve_config("patchcore", "tf_efficientnet_lite0", coreset_max_patches=None)
    assert unlimited.to_dict()["extra"]["coreset_max_patches"] is None
    for bad in (0, -5, 2.5, "many", True):
        with pytest.raises(SettingsError, match="coreset_max_patches must be a positive whole number"):
            resolve_config("patchcore", "tf_efficientnet_lite0", coreset_max_patches=bad)
