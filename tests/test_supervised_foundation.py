"""The supervised foundation: ``DetectorSpec.supervised`` and ``DetectorSpec.fit``.

An anomaly detector never trains on a defect (``train`` refuses); a supervised one needs labelled defects and
says what is missing; a detector with its own ``fit`` hook gets the labelled defects and the validation
samples, and its returned torch model is what is stored, exported and reloaded.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.test_model_smoke import make_folder_dataset
from tests.test_toy_detector import ToyDetector

NAME = "toy_supervised_fit"


def _sample(name: str, label: int, mask: bool = False, kind: str = "scratch") -> Any:
    from iadbe.data.samples import Sample

    return Sample(Path(f"/x/{name}.png"), label, Path(f"/x/{name}_mask.png") if mask else None,
                  kind if label else "good")


def test_an_anomaly_detector_refuses_training_defects() -> None:
    from iadbe.data.supervised import check_training_samples
    from iadbe.errors import SettingsError

    normals = [_sample(f"n{i}", 0) for i in range(3)]
    check_training_samples(normals, supervised=False, detector="PaDiM")
    with pytest.raises(SettingsError, match="anomaly detector: it trains on normal images only, but 1 training"):
        check_training_samples(normals + [_sample("d0", 1, mask=True)], supervised=False, detector="PaDiM")


def test_a_supervised_detector_says_what_is_missing() -> None:
    from iadbe.data.supervised import check_training_samples
    from iadbe.errors import SettingsError

    normals = [_sample(f"n{i}", 0) for i in range(3)]
    with pytest.raises(SettingsError, match=r"has none \(3 normal images\).*--protocol kfold"):
        check_training_samples(normals, supervised=True, detector="U-Net")
    with pytest.raises(SettingsError, match="1 defects have no mask"):
        check_training_samples(normals + [_sample("d0", 1)], supervised=True, detector="U-Net")
    with pytest.raises(SettingsError, match="1 of 2 training defects have none"):
        check_training_samples(normals + [_sample("d0", 1), _sample("d1", 1, mask=True)], supervised=True,
                               detector="U-Net")
    check_training_samples(normals + [_sample("d1", 1, mask=True)], supervised=True, detector="U-Net")


def test_supervised_splits_move_labelled_validation_defects_never_test_ones() -> None:
    from iadbe.data.samples import SYNTHETIC_TYPE, DatasetSplits
    from iadbe.data.supervised import labelled_defects, supervised_splits

    val = [_sample(f"v{i}", 0) for i in range(2)] + [_sample(f"vd{i}", 1, mask=True) for i in range(6)]
    val.append(_sample("syn", 1, mask=True, kind=SYNTHETIC_TYPE))
    test = [_sample("t0", 0), _sample("td0", 1, mask=True)]
    splits = DatasetSplits("d", Path("/x"), None, "folder", [_sample("n0", 0)], val, test, "v")
    moved = supervised_splits(splits, seed=3)
    assert len(labelled_defects(moved.train)) == 4  # round(0.67 * 6)
    assert moved.test == test
    assert not {s.image for s in moved.train} & {s.image for s in moved.val}
    assert any(s.defect_type == SYNTHETIC_TYPE for s in moved.val)  # synthetic ones are no labelled defects
    assert supervised_splits(moved, seed=3) is moved
    assert supervised_splits(replace(splits, val=val[:2]), seed=3).train == splits.train


def _fit(request: Any) -> Any:
    """Fits the toy on the normals only, and records what it was given."""
    model = request.module.model
    model.train()
    normals = [s for s in request.train if not s.is_anomalous]
    from iadbe.images import load_image, to_batch

    batch = torch.from_numpy(to_batch([load_image(s.image) for s in normals], request.config.image_size))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (request.config.mean, request.config.std))
    model((batch - mean) / std)  # as the inference graph feeds it
    model.fit()
    request.progress(1.0, "fitted")
    request.record.update(epochs_trained=1.0, defects_seen=sum(s.is_anomalous for s in request.train),
                          val_seen=len(request.val))
    return model


@pytest.fixture(scope="module")
def toy_supervised() -> Any:
    from iadbe.models.registry import DetectorSpec, register, unregister

    spec = register(DetectorSpec(
        name=NAME, display_name="Toy supervised", anomalib_class="", family="Supervised", in_study=False,
        default_backbone=None, layers_arg=None, generalized=ToyDetector, defaults={"pool": 4},
        supervised=True, fit=_fit))
    yield spec
    unregister(NAME)


def test_a_fit_hook_gets_labelled_defects_and_its_model_is_stored(toy_supervised: Any, tmp_path: Path) -> None:
    from iadbe import constants
    from iadbe.data import load_dataset
    from iadbe.inference import load_model
    from iadbe.training import train

    data = make_folder_dataset(tmp_path / "parts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "IADBE_HOME", tmp_path / "home")
        splits = load_dataset("folder", data, seed=0)
        # the test's defects go to training here (as a k-fold protocol would move a fold's)
        defects = [s for s in splits.test if s.is_anomalous]
        fold = replace(splits, train=splits.train + defects[:3], test=[s for s in splits.test if s not in defects[:3]])
        result = train(NAME, "folder", data, image_size=64, splits=fold, out=tmp_path / "m")
        with pytest.raises(Exception, match="anomaly detector: it trains on normal images only"):
            train("padim", "folder", data, image_size=64, splits=fold, out=tmp_path / "p")
    assert result.meta["fit"] == {"defects_seen": 3, "val_seen": len(splits.val)}
    assert result.meta["epochs_trained"] == 1.0 and result.meta["train_defects"] == 3
    image = sorted((data / "defect").glob("*.png"))[-1]
    # f32: the graphs are the same computation (auto may run bf16 where the export check kept it)
    scores = [load_model(result.model_dir, backend=b, precision="f32").predict([image])[0].score
              for b in ("torch", "openvino")]
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-4, atol=1e-5)
