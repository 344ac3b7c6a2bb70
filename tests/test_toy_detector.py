"""A detector registered from this file alone is trained, exported, loaded and run for predictions.

This is docs/ARCHITECTURE.md's "Adding a detector" carried out: one ``DetectorSpec`` with its class and
hooks, and nothing edited anywhere else in the package. The toy is a per-position Gaussian of
4x4-pooled colours (no backbone): small enough to train in seconds, and it tells the red discs of
``make_folder_dataset`` from its striped normals, so the scores below say something.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from anomalib import LearningType
from anomalib.data import InferenceBatch
from anomalib.models.components import AnomalibModule, MemoryBankMixin
from torch import nn
from torch.nn import functional as F

from tests.test_model_smoke import make_folder_dataset

NAME = "toy_pixel_gaussian"


class ToyModel(nn.Module):
    """Mean and spread of each pooled position's colour over the training images; the map is the
    z-score averaged over the channels, upsampled; the image score its maximum."""

    def __init__(self, pool: int = 4) -> None:
        super().__init__()
        self.pool = pool
        self.eps = 1e-3  # set from detector.extra by the after_build hook
        self.register_buffer("mean", torch.empty(0))  # data-sized: (3, H / pool, W / pool) once fitted
        self.register_buffer("spread", torch.empty(0))
        self.memory: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> Any:
        pooled = F.avg_pool2d(images, self.pool)
        if self.training:
            self.memory.append(pooled.detach())
            return pooled
        z = ((pooled - self.mean) / self.spread).abs().mean(1, keepdim=True)
        anomaly_map = F.interpolate(z, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return InferenceBatch(pred_score=anomaly_map.amax(dim=(-3, -2, -1)), anomaly_map=anomaly_map)

    def fit(self) -> None:
        pooled = torch.cat(self.memory)
        self.memory = []
        self.mean = pooled.mean(0)
        self.spread = pooled.std(0) + self.eps


class ToyDetector(MemoryBankMixin, AnomalibModule):
    def __init__(self, pool: int = 4, pre_processor: Any = True, post_processor: Any = True,
                 evaluator: Any = True, visualizer: Any = True) -> None:
        super().__init__(pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator,
                         visualizer=visualizer)
        self.model = ToyModel(pool)

    @staticmethod
    def configure_optimizers() -> None:
        return None

    def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        del args, kwargs
        self.model(batch.image)
        return torch.tensor(0.0, requires_grad=True, device=self.device)

    def fit(self) -> None:
        self.model.fit()

    def validation_step(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {"gradient_clip_val": 0, "max_epochs": 1, "num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS


def _iadbe_settings() -> dict[str, Any]:
    return {"toy_eps": 1e-3}


def _check_iadbe_settings(extra: dict[str, Any]) -> None:
    from iadbe.errors import SettingsError

    if not extra["toy_eps"] > 0:
        raise SettingsError(f"toy_eps must be positive, got {extra['toy_eps']}")


def _after_build(torch_model: ToyModel, extra: dict[str, Any]) -> None:
    torch_model.eps = float(extra.get("toy_eps", 1e-3))


@pytest.fixture(scope="module")
def toy() -> Any:
    from iadbe.models.registry import DetectorSpec, get_spec, register, unregister

    spec = register(DetectorSpec(
        name=NAME, display_name="Toy pixel Gaussian", anomalib_class="", family="Distribution Map",
        in_study=False, default_backbone=None, layers_arg=None, generalized=ToyDetector,
        defaults={"pool": 4}, max_epochs=1, train_batch_size=8,
        iadbe_settings=_iadbe_settings, check_iadbe_settings=_check_iadbe_settings, after_build=_after_build,
        min_train_images=lambda init_args: 3,
    ))
    assert get_spec("Toy-Pixel-Gaussian") is spec
    yield spec
    unregister(NAME)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder_dataset(tmp_path_factory.mktemp("toy_data") / "parts")


@pytest.fixture(scope="module")
def trained(toy: Any, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from iadbe import constants
    from iadbe.training import train

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "IADBE_HOME", tmp_path_factory.mktemp("toy_home"))
        yield train(NAME, "folder", dataset, image_size=64, max_train_images=12, seed=0,
                    out=tmp_path_factory.mktemp("toy_models") / "toy", overrides={"toy_eps": 0.01})


def test_the_registered_toy_trains_and_exports(trained: Any) -> None:
    files = {p.relative_to(trained.model_dir).as_posix() for p in trained.model_dir.rglob("*") if p.is_file()}
    assert {"iadbe.json", "weights.safetensors", "openvino/model.xml", "openvino/model.bin"} <= files
    detector = trained.meta["detector"]
    assert trained.meta["model"] == NAME
    assert detector["extra"] == {"implementation": "iadbe", "toy_eps": 0.01}  # its own setting, recorded
    assert detector["init_args"] == {"pool": 4}
    assert trained.metrics["image_AUROC"] > 0.9  # red discs on stripes: the fit is real
    assert trained.metrics["pixel_AUROC"] > 0.9


def test_the_toy_loads_and_predicts_alike_in_torch_and_openvino(trained: Any, dataset: Path) -> None:
    from iadbe.inference import load_model

    images = sorted((dataset / "defect").glob("*.png"))[:2] + sorted((dataset / "good").glob("*.png"))[:2]
    by_backend = {}
    for backend in ("torch", "openvino"):
        model = load_model(trained.model_dir, backend=backend, precision="f32")
        assert model.backend_name == backend
        by_backend[backend] = model.predict(images, batch_size=3)
    torch_scores = np.array([p.score for p in by_backend["torch"]])
    openvino_scores = np.array([p.score for p in by_backend["openvino"]])
    np.testing.assert_allclose(openvino_scores, torch_scores, rtol=1e-4, atol=1e-5)
    assert min(torch_scores[:2]) > max(torch_scores[2:])  # defects above the normals
    assert all(p.anomaly_map.shape == p.image.shape[:2] for p in by_backend["torch"])


def test_the_toy_hooks_refuse_what_they_refuse(toy: Any, dataset: Path, tmp_path: Path) -> None:
    from iadbe.errors import SettingsError
    from iadbe.models import resolve_config
    from iadbe.training import train

    with pytest.raises(SettingsError, match="toy_eps must be positive"):
        resolve_config(NAME, image_size=64, toy_eps=0)
    with pytest.raises(SettingsError, match="has no setting 'layers'"):
        resolve_config(NAME, image_size=64, layers=["blocks.2"])
    with pytest.raises(SettingsError, match="at least 3 training images"):
        train(NAME, "folder", dataset, image_size=64, max_train_images=2, out=tmp_path / "few")
