"""The inference-graph speed-ups compute what anomalib computes (see iadbe/models/graphs.py, padim.py, patchcore.py)."""

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


@pytest.mark.parametrize(("name", "size"), [("padim", (64, 64)), ("patchcore", (64, 64)), ("padim", (64, 96)),
                                            ("patchcore", (96, 64))])
def test_inference_graph_with_speedups_equals_anomalib_model(name: str, size: tuple[int, int]) -> None:
    """The whole graph (separable blur, PaDiM's strips, PatchCore's nearest-neighbour rewrite, matrix
    resampling) against anomalib's forward, at batch 1 and 3; the model's state dict keeps its keys."""
    import copy

    from iadbe.graph import build_inference_graph
    from iadbe.models import DetectorConfig
    from tests.test_model_smoke import _fitted_model

    model = _fitted_model(name, size)
    reference = copy.deepcopy(model)
    keys = set(model.state_dict())
    config = DetectorConfig(model=name, init_args={}, backbone=None, image_size=size, mean=(0.5, 0.5, 0.5),
                            std=(0.5, 0.5, 0.5))
    graph = build_inference_graph(model, config)
    assert set(model.state_dict()) == keys
    assert not any(type(m).__name__ == "GaussianBlur2d" for m in graph.modules())
    assert type(graph._forward).__name__ == {"padim": "PadimGraph", "patchcore": "PatchcoreGraph"}[name]
    assert graph._forward.resampler is not None
    for batch in (1, 3):
        images = torch.rand(batch, 3, *size)
        with torch.no_grad():
            expected = reference((images - 0.5) / 0.5)
            scores, maps = graph(images)
        torch.testing.assert_close(scores, expected.pred_score.reshape(batch), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(maps, expected.anomaly_map.reshape(batch, *size), rtol=1e-5, atol=1e-4)


def test_padim_graph_with_any_strip_count_and_a_layer_with_no_kept_channel() -> None:
    from iadbe.models.padim import padim_graph
    from tests.test_model_smoke import _fitted_model

    model = _fitted_model("padim")
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images).pred_score
        for strips in (1, 2, 5, 7):
            torch.testing.assert_close(padim_graph(model, (64, 64), strips)(images).pred_score, expected,
                                       rtol=1e-5, atol=1e-5)
        # keep only channels of the first layer: the other layers drop out of the embedding
        first_width = model.feature_extractor(images[:1])[model.layers[0]].shape[1]
        kept = first_width // 2
        model.idx = torch.randperm(first_width)[:kept]
        model.gaussian.mean = model.gaussian.mean[:kept]
        model.gaussian.inv_covariance = model.gaussian.inv_covariance[:, :kept, :kept].contiguous()
        graph = padim_graph(model, (64, 64))
        assert len(graph.layers) == 1
        torch.testing.assert_close(graph(images).pred_score, model(images).pred_score, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("mode", "map_size", "image_size"), [("bilinear", (16, 16), (64, 64)),
                                                              ("nearest", (8, 12), (64, 96)),
                                                              ("bilinear", (20, 13), (77, 50))])
def test_map_resampler_equals_interpolation_and_blur(mode: str, map_size, image_size) -> None:
    from anomalib.models.components.filters import GaussianBlur2d
    from torch.nn import functional as F

    from iadbe.models.resampling import fit_map_resampler

    blur = GaussianBlur2d(sigma=4.0, channels=1)

    def to_map(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        return blur(F.interpolate(scores, size=size, mode=mode, **kwargs))

    resampler = fit_map_resampler(to_map, map_size, image_size)
    assert resampler is not None
    scores = torch.rand(3, 1, *map_size) * 40
    assert resampler.fits(scores, image_size) and not resampler.fits(scores, (image_size[0] + 1, image_size[1]))
    torch.testing.assert_close(resampler(scores), to_map(scores, image_size), rtol=1e-5, atol=1e-4)


def test_map_resampler_refuses_what_is_not_a_separable_linear_map() -> None:
    from torch.nn import functional as F

    from iadbe.models.resampling import fit_map_resampler

    def upsample(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)

    def swapped(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # linear, but mixes rows and columns
        return upsample(scores.transpose(-1, -2), size[::-1]).transpose(-1, -2)

    assert fit_map_resampler(lambda s, size: upsample(s, size) ** 2, (8, 8), (32, 32)) is None  # not linear
    assert fit_map_resampler(lambda s, size: upsample(s, size) + s.mean(), (8, 8), (32, 32)) is None  # not separable
    assert fit_map_resampler(swapped, (8, 12), (32, 48)) is not None  # transposing twice is still separable
    assert fit_map_resampler(lambda s, size: upsample(s, (32, 32)), (8, 8), (32, 48)) is None  # not the size asked
    assert fit_map_resampler(upsample, (8, 8), (32, 32)) is not None


@pytest.mark.parametrize("in_place", [True, False], ids=["eager-buffer", "traced-blocks"])
@pytest.mark.parametrize("chunk_rows", [7, 64, 10**6])
def test_patchcore_blockwise_nearest_neighbours_equal_anomalib(chunk_rows: int, in_place: bool, monkeypatch) -> None:
    """The memory bank searched in blocks (a ragged last one too), with and without the neighbour re-weighting,
    by both forms: eager torch's one reused buffer and the list of blocks that export traces."""
    from iadbe.models import patchcore
    from tests.test_model_smoke import _fitted_model

    monkeypatch.setattr(patchcore, "NN_CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(patchcore, "_eager_f32", lambda flat, bank, _real=patchcore._eager_f32: in_place and
                        _real(flat, bank))
    model = _fitted_model("patchcore")
    assert model.memory_bank.shape[0] > 64 and model.memory_bank.shape[0] % 7
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        features = {k: model.feature_pooler(f) for k, f in model.feature_extractor(images).items()}
        embedding = model.generate_embedding(features)
    flat = embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])
    # Both sides compute d^2 = |x|^2 - 2 x.y + |y|^2 in float32, with differently blocked matmuls whose
    # summation order depends on the CPU's kernels (AVX-512 vs AMX). The rounding error of d^2 scales with
    # the magnitudes |x|^2 + |y|^2 (here ~30x d^2), not with d^2: about eps * sqrt(C) * (|x|^2 + |y|^2) for
    # C channels, so about that / (2 d) on d. Allowed: twice that at the smallest distance (~3e-3 on distances
    # of ~6-10; AMD EPYC differed by 1.6e-4 under the old 1e-5, this machine by 9e-5). Reading the wrong block or
    # dropping the ragged last one moves a nearest distance by the gap between bank points, far more.
    eps = torch.finfo(torch.float32).eps
    magnitude = float(flat.pow(2).sum(1).max() + model.memory_bank.pow(2).sum(1).max())
    squared_tol = 2 * eps * flat.shape[1] ** 0.5 * magnitude
    for neighbours in (1, 9):
        model.num_neighbors = neighbours
        with torch.no_grad():
            expected = model(images)
            got = patchcore.patchcore_forward(model, images)
        atol = squared_tol / (2 * float(expected.anomaly_map.min()))
        spread = float(expected.anomaly_map.max() - expected.anomaly_map.min())
        assert atol < 0.01 * spread  # the tolerance stays far below the differences the map is there to show
        torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=atol)
        torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=0, atol=atol)
