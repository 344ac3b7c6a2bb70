"""Smoke test of every detector that runs here: train 1 epoch on a tiny synthetic dataset, export,
and check that the OpenVINO IR gives the torch graph's numbers at batch 1 and batch 3.

The export traces the graph at batch 2; a model whose forward bakes that batch in (Python ints
from shapes) fails or reads wrong rows at other batches, hence the two batch sizes. The graph
forwards of ``iadbe.models.graphs`` are also compared with anomalib's own forwards in torch.

Sizes were chosen for anomalib 2.7's limits (see the notes above ``CASES``); timings on 2 CPU cores
are in its comments; the cases over 20 s are marked ``slow`` (the default run deselects them).
Whole file 1.3..2.6 min with ``slow``, 1.7 min without on a busy machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SLOW = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    model: str
    image_size: int = 64
    train_images: int = 8
    batch_size: int = 8
    overrides: dict[str, Any] = field(default_factory=dict)


#: One short training per model. Notes on anomalib 2.7's minimums:
#: * DFKDE: its KDE over ``n_pca_components`` (16) PCA components needs at least 17 training images;
#:   with fewer than 16 anomalib's ``KDEClassifier.fit`` silently fits nothing (see the test below).
#: * CFLOW: every training batch must hold at least ``fiber_batch_size`` (64) feature vectors of
#:   the coarsest layer (stride 32: 2 x 2 per 64 px image), so 16 images in one batch.
#: * SuperSimpleNet: its Perlin masks need a feature map (stride 4) over 16 px -> images >= 96 px.
CASES = [  # wall seconds on 2 CPU cores shared with other jobs (quiet .. busy), export included
    pytest.param(Case("padim"), id="padim"),  # 11..18 (the first test also loads the libraries)
    pytest.param(Case("patchcore"), id="patchcore"),  # 5..15
    pytest.param(Case("dfm"), id="dfm"),  # 4..6
    pytest.param(Case("fre"), id="fre"),  # 3..5
    pytest.param(Case("dfkde", train_images=17, batch_size=17), id="dfkde"),  # 4
    pytest.param(Case("ganomaly"), id="ganomaly"),  # 4..8
    pytest.param(Case("supersimplenet", image_size=96), id="supersimplenet"),  # 6..10
    pytest.param(Case("cflow", train_images=16, batch_size=16), id="cflow", marks=SLOW),  # 9..34
    pytest.param(Case("stfpm"), id="stfpm", marks=SLOW),  # 7..27
    pytest.param(Case("draem", train_images=4, batch_size=4), id="draem", marks=SLOW),  # 17..22
]

DATA_SIZE = 96
NORMAL_IMAGES = 24  # pooled split: 5 test, 2 val, 17 train normals
DEFECT_IMAGES = 4


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A striped, noisy RGB texture in [0, 1] (every normal image alike up to phase and noise)."""
    yy, xx = np.mgrid[0:size, 0:size]
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin(xx / 3.0 + phase) + 0.5 * np.sin(yy / 5.0 + phase)
    image = 0.5 + 0.2 * stripes[..., None] * np.array([1.0, 0.8, 0.6])
    return np.clip(image + rng.normal(0, 0.04, (size, size, 3)), 0, 1)


def make_folder_dataset(root: Path, seed: int = 0) -> Path:
    """``good/`` + ``defect/`` + ``masks/``: textured normals, defects are red discs with their masks."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in ("good", "defect", "masks"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for index in range(NORMAL_IMAGES):
        Image.fromarray((_texture(rng, DATA_SIZE) * 255).astype(np.uint8)).save(root / "good" / f"{index:03d}.png")
    yy, xx = np.mgrid[0:DATA_SIZE, 0:DATA_SIZE]
    for index in range(DEFECT_IMAGES):
        image = _texture(rng, DATA_SIZE)
        cy, cx = rng.integers(DATA_SIZE // 4, 3 * DATA_SIZE // 4, 2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < (DATA_SIZE // 8) ** 2
        image[mask] = (0.9, 0.15, 0.1)
        Image.fromarray((image * 255).astype(np.uint8)).save(root / "defect" / f"{index:03d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    """IADBE_HOME (synthetic val anomalies, DRAEM's texture folder, lightning files) in a temp folder."""
    from iadbe import constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "IADBE_HOME", tmp_path_factory.mktemp("iadbe_home"))
        yield constants.IADBE_HOME


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Path:
    return make_folder_dataset(tmp_path_factory.mktemp("data") / "parts")


def _batch(dataset: Path, size: int, count: int) -> np.ndarray:
    """Real images (defects first), as inference reads them: float32 N x 3 x size x size in [0, 1]."""
    from iadbe.images import load_image, to_batch

    paths = sorted((dataset / "defect").glob("*.png"))[:2] + sorted((dataset / "good").glob("*.png"))
    return to_batch([load_image(path) for path in paths[:count]], (size, size))


@pytest.mark.parametrize("case", CASES)
def test_trains_exports_and_openvino_matches_torch(case: Case, dataset: Path, tmp_path: Path) -> None:
    from iadbe.training import train

    result = train(case.model, "folder", dataset, image_size=case.image_size, max_epochs=1,
                   max_train_images=case.train_images, batch_size=case.batch_size, out=tmp_path / case.model,
                   overrides=dict(case.overrides) or None, seed=0)
    files = {p.relative_to(result.model_dir).as_posix() for p in result.model_dir.rglob("*") if p.is_file()}
    assert {"iadbe.json", "weights.safetensors", "openvino/model.xml", "openvino/model.bin"} <= files
    assert result.meta["train_images"] == case.train_images
    assert result.meta["epochs_trained"] == 1

    assert_openvino_matches_torch(result.model_dir, dataset, case.image_size, case.model)


def assert_openvino_matches_torch(model_dir: Path, dataset: Path, image_size: int, label: str,
                                  score_atol: float = 1e-6, exact_maps: bool = False) -> Any:
    """Torch (rebuilt from weights.safetensors) and OpenVINO give the same scores and maps at batch 1 and 3.

    ``exact_maps`` also requires maps of (batch, image_size, image_size) with finite torch values.
    Returns the torch model and the 3 images, for further checks.
    """
    from iadbe.inference import load_model, loading

    loading.CACHE.clear()
    torch_model = load_model(model_dir, "torch")
    ov_model = load_model(model_dir, "openvino", precision="f32")  # the same numbers, not the fastest kept
    images = _batch(dataset, image_size, 3)
    for batch in (images[:1], images):
        torch_scores, torch_maps = torch_model.backend.run(batch)
        ov_scores, ov_maps = ov_model.backend.run(batch)
        assert torch_scores.shape == ov_scores.shape == (len(batch),)
        assert ov_maps.shape == torch_maps.shape and ov_maps.shape[0] == len(batch)
        assert np.isfinite(torch_scores).all() and np.isfinite(ov_scores).all()
        if exact_maps:
            assert torch_maps.shape == (len(batch), image_size, image_size)
            assert np.isfinite(torch_maps).all()
        np.testing.assert_allclose(ov_scores, torch_scores, rtol=1e-3, atol=score_atol,
                                   err_msg=f"{label} scores at batch {len(batch)}")
        scale = max(float(np.abs(torch_maps).max()), 1e-6)
        np.testing.assert_allclose(ov_maps, torch_maps, rtol=1e-3, atol=1e-3 * scale,
                                   err_msg=f"{label} maps at batch {len(batch)}")
    return torch_model, images


def test_training_stops_at_its_time_budget(dataset: Path, tmp_path: Path) -> None:
    """max_train_minutes (Lightning's max_time) ends a long training early and the epochs done are recorded."""
    from iadbe.training import train

    result = train("ganomaly", "folder", dataset, image_size=64, max_epochs=500, max_train_images=8, batch_size=4,
                   max_train_minutes=0.05, out=tmp_path / "ganomaly", export=False)
    assert 0 < result.meta["epochs_trained"] < 500
    assert result.meta["max_train_minutes"] == 0.05
    assert result.meta["training_time_s"] < 60


def test_dfkde_with_too_few_images_says_why(dataset: Path, tmp_path: Path) -> None:
    """anomalib's KDEClassifier skips fitting below n_pca_components images; we stop with the reason."""
    from iadbe.errors import SettingsError
    from iadbe.training import train

    with pytest.raises(SettingsError, match="at least 17 training images"):
        train("dfkde", "folder", dataset, image_size=64, max_epochs=1, max_train_images=8, out=tmp_path / "dfkde")


# --- the batch-dynamic graph forwards against anomalib's own forwards (no training, random weights) ---

def _fitted_model(name: str, size: int | tuple[int, int] = 64) -> Any:
    """anomalib torch model of ``name`` with random backbone weights, fitted on random images."""
    import torch

    height, width = (size, size) if isinstance(size, int) else size
    from iadbe.models import create_detector, resolve_config

    torch.manual_seed(0)
    module = create_detector(resolve_config(name, image_size=size), pre_trained=False)
    model = module.model
    if name in {"patchcore", "dfm", "dfkde", "padim"}:
        model.train()
        with torch.no_grad():
            for _ in range(5 if name != "padim" else 40):  # PaDiM: enough samples for an invertible covariance
                model(torch.randn(4, 3, height, width))
        if name == "patchcore":
            model.subsample_embedding(0.5)
        else:
            model.fit()
    return model.eval()


@pytest.mark.parametrize("name", ["patchcore", "dfm", "fre", "dfkde", "cflow"])
def test_graph_forward_equals_anomalib_forward(name: str) -> None:
    import torch

    from iadbe.models import get_spec

    model = _fitted_model(name)
    forward = get_spec(name).hook("graph")(model, None)  # the batch-dynamic forward, no size-fitted rewrite
    torch.manual_seed(1)
    for batch in (1, 3):
        images = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            expected = model(images.clone())
            got = forward(images.clone())
        torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=1e-6, atol=1e-6)
        if expected.anomaly_map is None:
            assert got.anomaly_map is None
        else:
            torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=1e-6, atol=1e-6)


def test_cflow_flow_blocks_keep_their_softplus_beta_in_openvino() -> None:
    """OpenVINO's PyTorch frontend drops softplus' beta; CFLOW's flow blocks use beta=0.5 (see graphs.py)."""
    import openvino as ov
    import torch
    from anomalib.models.image.cflow.utils import cflow_head

    from iadbe.models.graphs import _openvino_safe_softplus

    torch.manual_seed(0)
    head = cflow_head(condition_vector=16, coupling_blocks=2, clamp_alpha=1.9, n_features=24).eval()
    with torch.no_grad():  # move the global scales away from their initial value
        for block in head.modules():
            if hasattr(block, "global_scale"):
                block.global_scale.add_(torch.randn_like(block.global_scale))

    class Flow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head

        def forward(self, fibers: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with _openvino_safe_softplus(self.head):
                return self.head(fibers, [condition])

    flow = Flow().eval()
    fibers, condition = torch.randn(10, 24) * 3, torch.randn(10, 16)
    with torch.no_grad():
        expected = head(fibers, [condition])  # anomalib's own blocks, beta=0.5 softplus
        converted = ov.convert_model(flow, example_input=(fibers, condition))
    compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled((fibers.numpy(), condition.numpy()))
    np.testing.assert_allclose(result[0], expected[0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result[1], expected[1].numpy(), rtol=1e-4, atol=1e-3)
