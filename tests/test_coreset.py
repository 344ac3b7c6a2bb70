"""IADBE's greedy coreset selects exactly what anomalib's KCenterGreedy selects."""

from __future__ import annotations

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
