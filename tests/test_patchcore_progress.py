"""PatchCore's memory-bank phase (the coreset selection) reports progress to the library's progress
function, to the CLI's progress line and to the Training tab's progress bar."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_model_smoke import make_folder_dataset

pytest.importorskip("anomalib")

PHASE = "fitting the model (memory bank): "


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder_dataset(tmp_path_factory.mktemp("data") / "parts")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iadbe import constants

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path / "home")
    monkeypatch.setattr(constants, "MODEL_STORE", tmp_path / "home" / "models")


def _phase_reports(calls: list[tuple[float, str]]) -> list[tuple[float, str]]:
    return [(fraction, message) for fraction, message in calls if message.startswith(PHASE)]


@pytest.mark.parametrize("method", ["fast", "exact"])
def test_coreset_selection_reports_to_trains_progress(dataset: Path, tmp_path: Path, method: str) -> None:
    from iadbe.training import train

    calls: list[tuple[float, str]] = []
    result = train("patchcore", "folder", dataset, image_size=64, max_train_images=8, batch_size=8, export=False,
                   out=tmp_path / "model", overrides={"coreset_method": method},
                   progress=lambda fraction, message: calls.append((fraction, message)))
    phase = _phase_reports(calls)
    assert phase, f"no memory-bank progress among {[m for _, m in calls]}"
    # 8 images x 8 x 8 patches at 64 px (Lite0, stride 8), coreset ratio 0.1
    assert phase[-1][1].startswith(f"{PHASE}51/51")
    fractions = [fraction for fraction, _ in phase]
    assert fractions == sorted(fractions) and 0.6 < fractions[0] <= fractions[-1] <= 0.7
    memory_bank = [index for index, (_, message) in enumerate(calls) if message.startswith(PHASE)]
    fitting = [index for index, (_, message) in enumerate(calls) if message.startswith("epoch ")]
    calibrating = [index for index, (_, message) in enumerate(calls) if message.startswith("calibrating")]
    assert max(fitting) < min(memory_bank) and max(memory_bank) < min(calibrating)
    assert result.meta["detector"]["extra"]["coreset_method"] == method


def test_cli_shows_the_memory_bank_phase(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from iadbe.cli import main

    code = main(["train", "--model", "patchcore", "--dataset", "folder", "--root", str(dataset), "--image-size", "64",
                 "--max-train-images", "8", "--no-export", "--out", str(tmp_path / "model")])
    assert code == 0
    assert f"{PHASE}51/51" in capsys.readouterr().err


def test_training_tab_progress_bar_shows_the_memory_bank_phase(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gradio")
    from iadbe.app import common, training_tab

    monkeypatch.setattr(common, "server_data_roots", lambda: [dataset.parent])
    calls: list[tuple[float, str]] = []
    training_tab.train_model(None, str(dataset), "", "patchcore", "", 64, 1, 8, "progress-test",
                             progress=lambda fraction, desc="": calls.append((fraction, desc)))
    assert any(message.startswith(f"{PHASE}51/51") for message in (desc for _, desc in _phase_reports(calls)))
