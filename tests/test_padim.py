"""PaDiM's Gaussian fit with a feature-scaled covariance regulariser (iadbe.models.padim)."""

import pytest
import torch

from iadbe.models.padim import (
    ANOMALIB_EPS,
    covariance_eps,
    fit_gaussian,
    install_regularized_fit,
    mean_variance,
    regularize_fitted,
)


def _embedding(n=40, c=6, h=4, w=5, scale=1.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(c, c, generator=generator)
    x = torch.randn(n, h * w, c, generator=generator) @ mixing  # correlated channels
    return (scale * x).permute(0, 2, 1).reshape(n, c, h, w).contiguous()


def _mahalanobis(embedding, mean, inverse):
    from anomalib.models.image.padim.anomaly_map import AnomalyMapGenerator

    return AnomalyMapGenerator.compute_distance(embedding, [mean, inverse])


def test_relative_eps_zero_reproduces_anomalibs_gaussian():
    from anomalib.models.components import MultiVariateGaussian

    embedding = _embedding()
    reference = MultiVariateGaussian()
    reference.fit(embedding)
    mean, inverse, eps = fit_gaussian(embedding, relative_eps=0.0)
    assert eps == pytest.approx(ANOMALIB_EPS)
    assert mean.shape == reference.mean.shape and inverse.shape == reference.inv_covariance.shape
    assert mean.dtype == inverse.dtype == torch.float32
    torch.testing.assert_close(mean, reference.mean)
    torch.testing.assert_close(inverse, reference.inv_covariance, rtol=1e-4, atol=1e-4)


def test_eps_is_the_given_share_of_the_mean_per_location_variance():
    embedding = _embedding()
    per_location = embedding.reshape(40, 6, 20).permute(2, 0, 1)
    diagonal = torch.stack([torch.cov(loc.T.double()).diagonal() for loc in per_location])
    assert mean_variance(embedding) == pytest.approx(float(diagonal.mean()), rel=1e-9)
    _, _, eps = fit_gaussian(embedding, relative_eps=0.5)
    assert eps == pytest.approx(0.5 * float(diagonal.mean()), rel=1e-9)
    assert covariance_eps(1e-6, 0.5) == ANOMALIB_EPS  # floored at anomalib's value
    with pytest.raises(ValueError):
        covariance_eps(1.0, -0.1)
    with pytest.raises(ValueError):
        fit_gaussian(embedding[:1])


def test_distances_do_not_depend_on_the_feature_scale():
    train, test = _embedding(seed=0), _embedding(n=5, seed=1)
    distances = []
    for scale in (1.0, 30.0):
        mean, inverse, _ = fit_gaussian(train * scale, relative_eps=0.5)
        distances.append(_mahalanobis(test * scale, mean, inverse))
    torch.testing.assert_close(distances[0], distances[1], rtol=1e-4, atol=1e-4)


def test_a_tiny_shift_on_a_near_constant_region_no_longer_outscores_a_real_defect():
    """The tire failure: flat background whose test images drift slightly, a defect on the object."""
    train = _embedding(n=60, c=8, h=1, w=2, scale=3.0)
    train[:, :, 0, 0] = train[:, :, 0, 0] * 1e-3 + 1.0  # location 0: near-constant background
    test = _embedding(n=1, c=8, h=1, w=2, scale=3.0, seed=5)
    test[:, :, 0, 0] = 1.0 + 0.3  # background drifted a little (tiny next to the object's spread)
    test[:, :, 0, 1] = test[:, :, 0, 1] + 6.0  # a defect on the object (2 sigma-ish per channel)

    stock_mean, stock_inverse, _ = fit_gaussian(train, relative_eps=0.0)
    stock = _mahalanobis(test, stock_mean, stock_inverse)[0, 0, 0]
    assert stock[0] > stock[1]  # anomalib: the background drift wins

    mean, inverse, _ = fit_gaussian(train, relative_eps=0.5)
    fixed = _mahalanobis(test, mean, inverse)[0, 0, 0]
    assert fixed[1] > fixed[0]


@pytest.fixture(scope="module")
def padim_model():
    from anomalib.models.image.padim.torch_model import PadimModel

    return PadimModel(backbone="resnet18", layers=["layer1", "layer2"], pre_trained=False, n_features=12)


def _collect(model, images):
    model.train()
    model.memory_bank = []
    for batch in images.split(4):
        model(batch)


def test_installed_fit_keeps_a_plain_padim_state_dict_and_forward(padim_model):
    from anomalib.models.image.padim.torch_model import PadimModel

    images = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    _collect(padim_model, images)
    embedding = torch.vstack(padim_model.memory_bank)
    install_regularized_fit(padim_model, relative_eps=0.5)
    padim_model.fit()
    assert padim_model.memory_bank == []
    mean, inverse, eps = fit_gaussian(embedding, relative_eps=0.5)
    assert padim_model.covariance_eps == eps
    torch.testing.assert_close(padim_model.gaussian.inv_covariance, inverse)

    state = padim_model.state_dict()
    assert {"gaussian.mean", "gaussian.inv_covariance", "idx"} <= set(state)
    fresh = PadimModel(backbone="resnet18", layers=["layer1", "layer2"], pre_trained=False, n_features=12)
    fresh.load_state_dict(state)  # a stock model loads it: nothing new in the state dict
    fresh.eval()
    padim_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(images[:2]).anomaly_map, padim_model(images[:2]).anomaly_map)


def test_regularize_fitted_matches_a_direct_fit(padim_model):
    images = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    padim_model.__dict__.pop("fit", None)  # back to anomalib's own fit
    _collect(padim_model, images)
    embedding = torch.vstack(padim_model.memory_bank)
    padim_model.fit()  # stock: cov + 0.01 I
    eps = regularize_fitted(padim_model, relative_eps=0.5)
    _, inverse, expected_eps = fit_gaussian(embedding, relative_eps=0.5)
    assert eps == pytest.approx(expected_eps, rel=1e-3)
    torch.testing.assert_close(padim_model.gaussian.inv_covariance, inverse, rtol=1e-3, atol=1e-4)
