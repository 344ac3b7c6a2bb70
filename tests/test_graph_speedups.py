"""The inference-graph speed-ups compute what anomalib computes (see iadbe/models/graphs.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(("sigma", "channels", "padding"), [(4.0, 1, "same"), (2.0, 3, "same"), (4.0, 1, "valid")])
def test_separable_blur_equals_anomalib_blur(sigma: float, channels: int, padding: str) -> None:
    from anomalib.models.components.filters import GaussianBlur2d

    from iadbe.models.graphs import separable_blurs

    holder = torch.nn.Sequential(GaussianBlur2d(sigma=sigma, channels=channels, padding=padding))
    state = {key: value.clone() for key, value in holder.state_dict().items()}
    maps = torch.rand(2, channels, 80, 96) * 50
    expected = holder(maps)

    assert separable_blurs(holder) == 1
    assert type(holder[0]).__name__ == "SeparableGaussianBlur2d"
    got = holder(maps)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    assert holder.state_dict().keys() == state.keys()  # stored weights still load into stock anomalib
    torch.testing.assert_close(holder.state_dict()["0.kernel"], state["0.kernel"])


def test_non_gaussian_kernel_is_left_alone() -> None:
    from anomalib.models.components.filters import GaussianBlur2d

    from iadbe.models.graphs import separable_blurs

    holder = torch.nn.Sequential(GaussianBlur2d(sigma=1.0, channels=1))
    holder[0].kernel = torch.rand_like(holder[0].kernel)  # rank > 1: not separable
    assert separable_blurs(holder) == 0
    assert type(holder[0]) is GaussianBlur2d


@pytest.mark.parametrize("name", ["padim", "patchcore"])
def test_inference_graph_with_speedups_equals_anomalib_model(name: str) -> None:
    """The whole graph (separable blur, PatchCore's nearest-neighbour rewrite) against anomalib's forward."""
    import copy

    from iadbe.export import build_inference_graph
    from tests.test_model_smoke import _fitted_model

    model = _fitted_model(name)
    reference = copy.deepcopy(model)
    graph = build_inference_graph(model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert not any(type(m).__name__ == "GaussianBlur2d" for m in graph.modules())
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = reference((images - 0.5) / 0.5)
        scores, maps = graph(images)
    torch.testing.assert_close(scores, expected.pred_score.reshape(3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps, expected.anomaly_map.reshape(3, 64, 64), rtol=1e-5, atol=1e-4)
