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


@pytest.mark.parametrize(("n", "dims", "clusters", "size"), [(3000, 24, 12, 300), (2000, 64, 1, 200)])
def test_selection_equals_anomalib(n: int, dims: int, clusters: int, size: int) -> None:
    from iadbe.models.coreset import k_center_greedy

    features = _clustered(n, dims, clusters, seed=n)
    assert k_center_greedy(features, size, first=7) == _anomalib_selection(features, size, first=7)


def test_refuses_bad_size() -> None:
    from iadbe.models.coreset import k_center_greedy

    with pytest.raises(ValueError, match="coreset size"):
        k_center_greedy(torch.zeros(10, 3), 0, first=0)
