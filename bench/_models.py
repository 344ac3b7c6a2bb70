"""Small real models for the benchmarks, trained once and cached (tire if present, else a texture set)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iadbe import constants  # noqa: E402

CACHE = constants.IADBE_HOME / "bench"
TIRE = constants.SHARED_DATA / "mvtec_3d"


def bench_images(count: int = 8) -> list[Path]:
    if (TIRE / "tire").is_dir():
        paths = sorted((TIRE / "tire" / "test").glob("*/rgb/*.png"))
    else:
        paths = sorted((texture_dataset() / "defect").glob("*.png")) + sorted((texture_dataset() / "good").glob("*.png"))
    return paths[:: max(1, len(paths) // count)][:count]


def texture_dataset() -> Path:
    """A small good/defect/masks dataset cut from scikit-image's brick photograph."""
    import numpy as np
    from PIL import Image
    from skimage import data

    root = CACHE / "brick"
    if (root / "masks").is_dir():
        return root
    rng = np.random.default_rng(0)
    brick = np.stack([data.brick()] * 3, axis=-1)
    for folder in ("good", "defect", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(30):
        y, x = rng.integers(0, brick.shape[0] - 256), rng.integers(0, brick.shape[1] - 256)
        crop = brick[y : y + 256, x : x + 256].copy()
        if index < 24:
            Image.fromarray(crop).save(root / "good" / f"{index:03d}.png")
            continue
        mask = np.zeros((256, 256), np.uint8)
        cy, cx = rng.integers(40, 200, 2)
        crop[cy : cy + 24, cx : cx + 6] = 20
        mask[cy : cy + 24, cx : cx + 6] = 255
        Image.fromarray(crop).save(root / "defect" / f"{index:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{index:03d}.png")
    return root


def trained_model(name: str, train_images: int = 40) -> Path:
    """``name`` trained on ``train_images`` normals of tire (a brick texture set where tire is absent), cached.

    The cache is per dataset and keeps only models with a precision record (issue 17): an older one, or
    one trained on brick before tire was there, is trained again, so the precision rows compare IADBE's
    real default."""
    from iadbe.training import train

    on_tire = (TIRE / "tire").is_dir()
    target = CACHE / f"{name}-{train_images}-{'tire' if on_tire else 'brick'}"
    if (target / "iadbe.json").is_file() and "precision" in json.loads((target / "iadbe.json").read_text()):
        return target
    if on_tire:
        train(name, "mvtec3d", TIRE, category="tire", out=target, max_train_images=train_images, overwrite=True)
    else:
        train(name, "folder", texture_dataset(), out=target, max_train_images=train_images, overwrite=True)
    return target
