"""IADBE installed as a wheel (not editable) keeps its data: the study's tables and the shipped manifest.

Builds the wheel of this checkout, installs it (no dependencies: those are this environment's) into a
fresh ``--target``, and runs the CLI from a folder outside the checkout with only that target on the path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (requirements-dev.txt)")
    base = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "IADBE_MANIFEST"}}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(base / "dist"),
                  str(PROJECT)], base, env)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next((base / "dist").glob("iadbe-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"iadbe/benchmark/study_tables.json", "iadbe/models_manifest.yaml"} <= names, sorted(names)[:20]
    target = base / "target"
    done = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)], base, env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    outside = base / "elsewhere"
    outside.mkdir()
    env |= {"PYTHONPATH": str(target), "IADBE_HOME": str(base / "home"), "HF_HUB_OFFLINE": "1"}
    where = _run([sys.executable, "-c", "import iadbe, sys; print(iadbe.__file__)"], outside, env)
    assert Path(where.stdout.strip()).is_relative_to(target), where.stdout + where.stderr  # not the checkout
    return outside, env


def test_models_and_backbones_from_the_installed_wheel(installed: tuple[Path, dict[str, str]]) -> None:
    outside, env = installed
    models = _run([sys.executable, "-m", "iadbe", "models", "--all"], outside, env)
    assert models.returncode == 0, models.stderr[-3000:]
    assert "PatchCore" in models.stdout and "PaDiM" in models.stdout
    catalogue = _run([sys.executable, "-m", "iadbe", "models"], outside, env)  # reads the shipped manifest
    assert catalogue.returncode == 0, catalogue.stderr[-3000:]
    backbones = _run([sys.executable, "-m", "iadbe", "backbones"], outside, env)
    assert backbones.returncode == 0, backbones.stderr[-3000:]
    assert "tf_efficientnet_lite0" in backbones.stdout


def test_compare_study_from_the_installed_wheel(installed: tuple[Path, dict[str, str]]) -> None:
    outside, env = installed
    runs = outside / "results" / "runs"
    runs.mkdir(parents=True)
    record = {"run_id": "patchcore__tire__seed0", "status": "ok", "model": "patchcore", "category": "tire",
              "seed": 0, "mode": "per_category", "backbone": "tf_efficientnet_lite0", "training_time_s": 10.0,
              "metrics": {"image_AUROC": 0.70, "pixel_AUROC": 0.99, "pixel_AUPRO": 0.8}}
    (runs / "patchcore__tire__seed0.json").write_text(json.dumps(record), encoding="utf-8")
    compared = _run([sys.executable, "-m", "iadbe", "benchmark", "--dataset", "mvtec3d", "--out", "results",
                     "--compare-study"], outside, env)
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert "79.95" in compared.stdout  # the study's PatchCore tire image AUROC, from study_tables.json
