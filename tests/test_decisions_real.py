"""Labels and masks on real defects: for PaDiM and PatchCore with their defaults (Lite0, 256 px) on every
real category of ../shared/data, F1 at the calibrated thresholds reaches 90 % (image) and 75 % (pixel) of
the oracle F1, the best threshold chosen on the test set itself (slow: run by .ci/run).

The table in the README comes from ``python bench/decisions.py``, which trains the same way.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[1] / "bench" / "decisions.py"
_spec = importlib.util.spec_from_file_location("bench_decisions", _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("category", list(bench.REAL_CATEGORIES))
@pytest.mark.parametrize("model", ["padim", "patchcore"])
def test_calibrated_decisions_on_real_defects(model: str, category: str, tmp_path: Path) -> None:
    folder = bench.SHARED / bench.REAL_CATEGORIES[category][1]
    if not folder.is_dir():
        pytest.skip(f"real data absent: {folder}")
    row = bench.run(model, category, tmp_path)
    print(bench.table([row]))
    assert row["image_F1"] >= bench.IMAGE_TARGET * row["image_F1_oracle"], row
    assert row["pixel_F1"] >= bench.PIXEL_TARGET * row["pixel_F1_oracle"], row
