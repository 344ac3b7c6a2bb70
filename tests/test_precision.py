"""The fastest precision that changes no decision (issue 17, iadbe/precision.py).

The rule is tested on backends whose outputs are known (a candidate that moves scores a little, one that flips
a label, one that moves a score too far); the export check, ``auto`` and the ``f32`` switch on a real model.
No assertion depends on how this CPU rounds in bf16: only on the record being consistent with what the
backends give here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iadbe import precision as precisions
from iadbe.inference import precisions as choice
from iadbe.calibration import Calibration
from iadbe.data.samples import Sample

try:
    from .test_app import PROJECT, make_parts_dataset
except ImportError:
    from test_app import PROJECT, make_parts_dataset

#: raw threshold 1.0 and range 0..2: normalised = (raw - 1) / 2 + 0.5
CALIBRATION = Calibration(image_threshold=1.0, pixel_threshold=1.0, image_min=0.0, image_max=2.0,
                          pixel_min=0.0, pixel_max=2.0)
RAW = np.array([0.2, 0.6, 0.97, 1.3, 1.9], np.float32)  # normalised 0.1 .. 0.95; 0.985 sits 0.015 below 0.5


class KnownBackend:
    """Gives ``RAW`` (in sample order, plus ``shift``) and takes ``delay_s`` per call."""

    name, device, precision = "known", "cpu", "f32"

    def __init__(self, shift: np.ndarray | float = 0.0, delay_s: float = 0.0) -> None:
        self.shift, self.delay_s, self.calls = shift, delay_s, 0

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(self.delay_s)
        values = (RAW + self.shift)[: len(batch)]
        self.calls += 1
        return values.astype(np.float32), np.zeros((len(batch), *batch.shape[-2:]), np.float32)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[Sample]:
    folder = tmp_path_factory.mktemp("precision-images")
    out = []
    for index in range(len(RAW)):
        path = folder / f"{index}.png"
        Image.fromarray(np.full((16, 16, 3), 40 * index, np.uint8)).save(path)
        out.append(Sample(path, 0))
    return out


def test_a_small_change_is_kept_a_flip_or_a_large_change_is_not():
    small = precisions.compare_outputs(RAW, RAW + 0.02, CALIBRATION)  # normalised +0.01: 0.485 -> 0.495
    assert small == {"label_flips": 0, "max_score_change": pytest.approx(0.01, abs=1e-6)}
    flip = precisions.compare_outputs(RAW, RAW + np.array([0, 0, 0.04, 0, 0], np.float32), CALIBRATION)
    assert flip["label_flips"] == 1 and flip["max_score_change"] == pytest.approx(0.02, abs=1e-6)
    far = precisions.compare_outputs(RAW, RAW - np.array([0, 0, 0, 0.1, 0], np.float32), CALIBRATION)
    assert far == {"label_flips": 0, "max_score_change": pytest.approx(0.05, abs=1e-6)}


def test_auto_is_the_fastest_kept_precision_and_never_a_slower_one():
    checks = {"bf16": {"kept": True, "ms": 5.0}, "f16": {"kept": True, "ms": 3.0}}
    assert precisions.verdict(checks, f32_ms=10.0) == "f16"
    assert precisions.verdict({**checks, "f16": {"kept": False, "ms": 3.0}}, f32_ms=10.0) == "bf16"
    assert precisions.verdict(checks, f32_ms=2.0) == "f32"  # kept but slower than f32 here
    assert precisions.verdict({}, f32_ms=2.0) == "f32"


def test_check_keeps_only_candidates_that_change_no_decision(samples):
    backends = {"f32": KnownBackend(delay_s=0.02), "bf16": KnownBackend(0.02, delay_s=0.002),
                "f16": KnownBackend(np.array([0, 0, 0.04, 0, 0], np.float32), delay_s=0.001)}
    record = precisions.check_precisions(backends.__getitem__, ["bf16", "f16"], samples, (16, 16), CALIBRATION,
                                         device="test", timing_rounds=3)
    assert record["images"] == len(samples) and record["device"] == "test"
    bf16, f16 = record["candidates"]["bf16"], record["candidates"]["f16"]
    assert bf16["kept"] and bf16["label_flips"] == 0 and bf16["reason"] == "changes no validation label"
    assert not f16["kept"] and f16["label_flips"] == 1 and "flips 1" in f16["reason"]
    assert bf16["ms"] < record["f32_ms"]  # 2 ms against 20 ms of sleep
    assert record["auto"] == "bf16"  # f16 is faster still, but flips a label
    assert "bf16 kept" in precisions.describe({"openvino_cpu": record})


def test_auto_runs_a_kept_precision_only_where_this_machine_runs_it_natively(monkeypatch):
    record = {precisions.OPENVINO_CPU: {"auto": "bf16"}}
    monkeypatch.setattr(choice, "native_openvino_precisions", lambda: ("bf16",))
    assert choice.resolve("auto", record, precisions.OPENVINO_CPU) == "bf16"
    assert choice.resolve("f32", record, precisions.OPENVINO_CPU) == "f32"  # one flag away
    assert choice.resolve("auto", None, precisions.OPENVINO_CPU) == "f32"  # older models: never checked
    monkeypatch.setattr(choice, "native_openvino_precisions", lambda: ())
    assert choice.resolve("auto", record, precisions.OPENVINO_CPU) == "f32"  # checked elsewhere, emulated here
    monkeypatch.setattr(choice, "native_cuda_precisions", lambda: ())
    assert choice.resolve("auto", {precisions.TORCH_CUDA: {"auto": "f16"}}, precisions.TORCH_CUDA) == "f32"


def test_torch_autocast_runs_the_graph_in_the_lower_precision():
    """The CUDA path's autocast, exercised on the CPU (bf16 autocast exists there too)."""
    import torch

    from iadbe.inference.backends import TorchBackend

    seen = []

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            seen.append(y.dtype)
            return y.amax(dim=(1, 2, 3)), y[:, 0]

    batch = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    scores, maps = TorchBackend(Graph(), "cpu", "bf16").run(batch)
    assert seen[-1] == torch.bfloat16 and scores.dtype == np.float32 and maps.shape == (2, 8, 8)
    TorchBackend(Graph(), "cpu", "auto").run(batch)
    assert seen[-1] == torch.float32  # auto without a verdict: f32


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from iadbe.training import train

    base = tmp_path_factory.mktemp("precision-model")
    data = make_parts_dataset(base / "parts", good=24)
    return train("padim", "folder", data, backbone="tf_efficientnet_lite0", image_size=64,
                 out=base / "model").model_dir


def test_export_records_the_check_and_load_model_follows_it(model_dir):
    from iadbe import store
    from iadbe.inference import load_model

    record = store.read_config(model_dir)["precision"][precisions.OPENVINO_CPU]
    native = precisions.native_openvino_precisions()
    assert record["native"] == list(native) and set(record["candidates"]) == set(native)
    images = store.read_config(model_dir)["calibration"]["images"]
    assert record["images"] == len(images["normal"]) + len(images["real_defects"]) + images["synthetic"]
    for name, check in record["candidates"].items():
        assert check["kept"] == (check["label_flips"] == 0 and check["max_score_change"] <= 0.02)
    assert record["auto"] == "f32" or record["candidates"][record["auto"]]["kept"]

    auto = load_model(model_dir, backend="openvino")
    assert auto.backend.precision == record["auto"]
    f32 = load_model(model_dir, backend="openvino", precision="f32")
    torch_model = load_model(model_dir, backend="torch")
    images = sorted((model_dir.parent / "parts" / "defect").glob("*.png"))
    ours, reference = f32.predict(images), torch_model.predict(images)
    assert [p.precision for p in ours] == ["f32"] * len(images)
    assert np.allclose([p.score for p in ours], [p.score for p in reference], atol=1e-4)
    assert auto.predict(images[0])[0].summary()["precision"] == record["auto"]


def test_iadbe_export_checks_again_and_says_what_auto_runs(model_dir, tmp_path):
    import shutil

    model_dir = Path(shutil.copytree(model_dir, tmp_path / "model"))  # the other tests keep the trained record
    out = subprocess.run([sys.executable, "-m", "iadbe", "export", "--model-dir", str(model_dir)], cwd=PROJECT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    meta = json.loads((model_dir / "iadbe.json").read_text())
    record = meta["precision"][precisions.OPENVINO_CPU]
    # the synthetic anomalies are not kept: the re-check runs on the recorded real images
    images = meta["calibration"]["images"]
    assert record["images"] == len(images["normal"]) + len(images["real_defects"])
    assert f"auto runs {record['auto']}" in out.stdout
