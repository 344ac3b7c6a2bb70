"""Labels and masks on real defects: for PaDiM and PatchCore with their defaults (Lite0, 256 px) on every
real category of ../shared/data, F1 at the calibrated thresholds against the oracle F1 (the best threshold
chosen on the test set itself). Targets: image >= 90 %, pixel >= 75 % of the oracle.

Where a detector misses a target (README, "Labels and masks people can act on"), the test holds the
measured ratio as a regression floor, a few points below, and says why; a change that reaches the target
should raise the floor. PaDiM runs in CI (``slow``); PatchCore's five trainings do not fit next to the
rest (``heavy``: ``python -m pytest -m heavy``). The README's table comes from ``python bench/decisions.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[1] / "bench" / "decisions.py"
_spec = importlib.util.spec_from_file_location("bench_decisions", _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

_WEAK = "a weak detector on a defect-heavy test set: the oracle threshold sits near 'flag everything'"
#: (model, category, level) -> (floor, measured ratio and why the target is missed)
SHORTFALLS = {
    ("padim", "tire", "image"): (0.60, f"67.6 %: image AUROC 76.9, 78 % of test images defective; {_WEAK}"),
    ("padim", "capsules", "image"): (0.40, f"48.3 %: image AUROC 62.5, 62 % defective; {_WEAK}"),
    ("padim", "kolektor", "image"): (0.80, "89 %: 10 defective test images (one is 4 points); test goods score "
                                           "above the validation normals (17 % flagged where validation says 5 %)"),
    ("patchcore", "tire", "image"): (0.50, f"57.9 %: image AUROC 69.5 at 256 px; {_WEAK}"),
    ("patchcore", "capsules", "image"): (0.70, f"78.7 %: image AUROC 73.5; {_WEAK}"),
    ("patchcore", "kolektor", "pixel"): (0.30, "37 %: thin cracks of 100-700 pixels; 6 of the 10 defective test "
                                               "images are flagged and 9 good ones, each showing a region; with "
                                               "the true labels the same outline reaches 74 %, and the best pixel "
                                               "threshold for these labels 49 %"),
}
CASES = [pytest.param(model, category, marks=[pytest.mark.heavy] if model == "patchcore" else [],
                      id=f"{model}-{category}")
         for model in ("padim", "patchcore") for category in bench.REAL_CATEGORIES]


def _floor(model: str, category: str, level: str, target: float) -> float:
    return SHORTFALLS.get((model, category, level), (target, ""))[0]


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(("model", "category"), CASES)
def test_calibrated_decisions_on_real_defects(model: str, category: str, tmp_path: Path) -> None:
    folder = bench.SHARED / bench.REAL_CATEGORIES[category][1]
    if not folder.is_dir():
        pytest.skip(f"real data absent: {folder}")
    row = bench.run(model, category, tmp_path)
    print(bench.table([row]))
    image, pixel = bench.ratio(row, "image"), bench.ratio(row, "pixel")
    assert image >= _floor(model, category, "image", bench.IMAGE_TARGET), (image, row)
    assert pixel >= _floor(model, category, "pixel", bench.PIXEL_TARGET), (pixel, row)


def test_every_shortfall_names_a_real_case_and_sits_below_its_target():
    for (model, category, level), (floor, why) in SHORTFALLS.items():
        assert category in bench.REAL_CATEGORIES and model in ("padim", "patchcore") and why
        assert floor < (bench.IMAGE_TARGET if level == "image" else bench.PIXEL_TARGET)
