"""Decisions on real defects: F1 at the calibrated thresholds beside the oracle F1, per real category.

    python bench/decisions.py [--models padim,patchcore] [--categories tire,transistor] [--out FILE.md]

Trains each detector with its defaults (Lite0, 256 px) on every real category of ``../shared/data``
through ``iadbe.training.train`` (the engine every entry point uses), and prints one markdown table:
image and pixel F1 at the calibrated thresholds, the oracle F1 (best threshold on the test set), their
ratio against the targets (image >= 90 %, pixel >= 75 % of the oracle), and the false-alarm and miss rates.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: name -> (dataset kind, root below shared/data, category)
REAL_CATEGORIES = {
    "tire": ("mvtec3d", "mvtec_3d", "tire"),
    "transistor": ("mvtec", "mvtec_ad", "transistor"),
    "capsules": ("visa", "visa", "capsules"),
    "juice_bottle": ("folder", "mvtec_loco/juice_bottle", None),
    "kolektor": ("folder", "kolektorsdd_yolo/Datasets", None),
}
IMAGE_TARGET, PIXEL_TARGET = 0.90, 0.75


def run(model: str, name: str, out: Path) -> dict:
    from iadbe.training import train

    kind, folder, category = REAL_CATEGORIES[name]
    began = time.perf_counter()
    result = train(model, kind, SHARED / folder, category=category, backbone="tf_efficientnet_lite0",
                   out=out / f"{model}_{name}", export=False)
    return {"model": model, "category": name, "seconds": time.perf_counter() - began, **result.metrics}


def ratio(row: dict, level: str) -> float | None:
    oracle = row.get(f"{level}_F1_oracle")
    return None if not oracle else row.get(f"{level}_F1", 0.0) / oracle


def table(rows: list[dict]) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    lines = ["| model | category | image AUROC | image F1 | oracle | ratio | false alarms | misses "
             "| pixel F1 | oracle | ratio | targets met |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        image, pixel = ratio(row, "image"), ratio(row, "pixel")
        met = (image is not None and image >= IMAGE_TARGET) and (pixel is None or pixel >= PIXEL_TARGET)
        lines.append(f"| {row['model']} | {row['category']} | {pct(row.get('image_AUROC'))} | {pct(row.get('image_F1'))} "
                     f"| {pct(row.get('image_F1_oracle'))} | {pct(image)} % | {pct(row.get('image_false_alarm_rate'))} "
                     f"| {pct(row.get('image_miss_rate'))} | {pct(row.get('pixel_F1'))} "
                     f"| {pct(row.get('pixel_F1_oracle'))} | {pct(pixel)} % | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="padim,patchcore")
    parser.add_argument("--categories", default=",".join(REAL_CATEGORIES))
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"real data absent: {SHARED}")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.categories.split(","):
            for model in args.models.split(","):
                rows.append(run(model, name, Path(work)))
                print(f"{model} {name}: {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
