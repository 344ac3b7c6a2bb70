"""The offline demo model: PaDiM trained on crops of a real texture photograph with synthetic defects.

The app must show something useful on a machine with no network and no dataset. scikit-image ships a
few texture photographs (``skimage.data.gravel()``, 512 x 512, grey); this module cuts normal crops from
one of them, paints synthetic defects (scratches, blobs, pasted patches of another texture) with exact
masks, writes them in the plain ``good/`` + ``defect/`` + ``masks/`` layout and trains a small PaDiM on it
with :func:`iadbe.training.train`. The model's name starts with ``demo-``, so the app labels it
``DEMO (synthetic defects)``: its metrics say nothing about real parts.

    >>> from iadbe.demo import ensure_demo_model
    >>> model_dir = ensure_demo_model()  # doctest: +SKIP  (about a minute on 2 CPU cores, once)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from iadbe import constants

DEMO_NAME = "demo-padim-texture"
DEMO_PREFIX = "demo-"
DEMO_LABEL = "DEMO (synthetic defects)"
TEXTURE = "brick"  # skimage.data.<TEXTURE>(); grass() gives the pasted patches
BACKBONE = "tf_efficientnet_lite0"
CROP = 256
N_GOOD = 40
N_DEFECT = 10
DEFECT_KINDS = ("scratch", "blob", "patch")
_DATASET_VERSION = 1
_MARKER = "demo_dataset.json"
RUST = (120.0, 62.0, 30.0)  # colour of the stains
_LOCK = threading.Lock()  # held while the demo model is trained
_DATASET_LOCK = threading.Lock()  # held while the demo dataset is written (briefly)

ProgressFn = Callable[[float, str], None]


def is_demo(name: str | None) -> bool:
    """True for a demo model's name or folder (``demo-...``)."""
    return bool(name) and Path(str(name)).name.startswith(DEMO_PREFIX)


def demo_model_dir() -> Path:
    """Where the demo model lives in the local store (it may not exist yet)."""
    return constants.MODEL_STORE / DEMO_NAME


def demo_dataset_dir() -> Path:
    """Where the demo dataset is written (``IADBE_HOME/demo_dataset``)."""
    return constants.IADBE_HOME / "demo_dataset"


def ensure_demo_model(progress: ProgressFn | None = None) -> Path:
    """The demo model's directory, building the dataset and training the model first if missing.

    Thread-safe (the app may call it from a background thread while a user asks for it).

    Args:
        progress: called with (fraction in [0, 1], message), as :func:`iadbe.training.train` does.
    Returns:
        ``MODEL_STORE / "demo-padim-texture"``.
    Raises:
        IADBEError: the backbone weights are missing or the store cannot be written.
    """
    report = progress or (lambda fraction, message: None)
    with _LOCK:
        target = demo_model_dir()
        if (target / "iadbe.json").is_file():
            return target
        report(0.0, "building the demo dataset from a texture photograph")
        root = build_demo_dataset()
        from iadbe.models.layers import map_layers
        from iadbe.training import train

        # the stride-8 and stride-16 stages (ResNet layer2 + layer3): a 32 x 32 Gaussian grid trains in
        # seconds and keeps the model directory under 100 MB; layer1's 64 x 64 grid is 4x slower and bigger
        layers = map_layers(BACKBONE, ("layer2", "layer3"))
        train("padim", "folder", root, backbone=BACKBONE, image_size=CROP, name=DEMO_NAME, out=target,
              overwrite=True, seed=0, overrides={"layers": layers},
              progress=lambda f, m: report(0.05 + 0.95 * f, m))
        return target


def demo_examples(count: int = 4) -> list[Path]:
    """A few example images for the app: half normal, half defective (the dataset is built if missing)."""
    root = build_demo_dataset()
    good = sorted((root / "good").glob("*.png"))
    defects = sorted((root / "defect").glob("*.png"))
    picks = good[-(count // 2):] if count >= 2 else []
    by_kind = [next((p for p in defects if p.stem.startswith(kind)), None) for kind in DEFECT_KINDS]
    picks += [p for p in by_kind if p is not None][: count - len(picks)]
    return picks


def build_demo_dataset(root: Path | None = None, seed: int = 0) -> Path:
    """Write the demo dataset (once; later calls return the existing folder).

    Layout: ``good/good_000.png`` ... (``N_GOOD``), ``defect/<kind>_00.png`` ... (``N_DEFECT``) and
    ``masks/<kind>_00.png`` (255 = defect), all ``CROP`` x ``CROP`` RGB PNGs.
    """
    root = Path(root or demo_dataset_dir())
    with _DATASET_LOCK:
        if _complete(root):
            return root
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-demo-", dir=root.parent))
        try:
            _write_dataset(staging, seed)
            (staging / _MARKER).write_text(json.dumps({"version": _DATASET_VERSION, "texture": TEXTURE,
                                                       "seed": seed}), encoding="utf-8")
            if not _complete(root):  # another process may have finished first: keep its copy
                if root.exists():
                    shutil.rmtree(root)
                staging.rename(root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root


def _complete(root: Path) -> bool:
    marker = root / _MARKER
    return marker.is_file() and _marker_version(marker) == _DATASET_VERSION


def _marker_version(marker: Path) -> int | None:
    try:
        return int(json.loads(marker.read_text(encoding="utf-8")).get("version"))
    except (ValueError, TypeError, AttributeError, OSError):
        return None


# --------------------------------------------------------------------------- image synthesis
def _texture(name: str) -> np.ndarray:
    import skimage.data

    grey = getattr(skimage.data, name)()
    return np.stack([grey] * 3, axis=-1) if grey.ndim == 2 else grey[..., :3]


def _normal_crop(texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A seeded crop with a flip / 90-degree turn and a small brightness, contrast and noise change."""
    height, width = texture.shape[:2]
    y, x = rng.integers(0, height - CROP + 1), rng.integers(0, width - CROP + 1)
    crop = texture[y : y + CROP, x : x + CROP].astype(np.float32)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    mean = crop.mean()
    crop = (crop - mean) * rng.uniform(0.94, 1.06) + mean + rng.uniform(-6, 6)
    crop += rng.normal(0, 2.0, crop.shape)
    return np.clip(crop + 0.5, 0, 255).astype(np.uint8)


def _scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    mask = np.zeros(image.shape[:2], np.uint8)
    points = [rng.integers(30, CROP - 30, 2)]
    for _ in range(int(rng.integers(2, 4))):
        step = rng.integers(-60, 61, 2)
        points.append(np.clip(points[-1] + step, 8, CROP - 8))
    cv2.polylines(mask, [np.asarray(points, np.int32).reshape(-1, 1, 2)], False, 255, int(rng.integers(4, 8)))
    return _blend(image, mask, (245.0, 245.0, 240.0)), mask


def _blob(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    mask = np.zeros(image.shape[:2], np.uint8)
    centre = tuple(int(v) for v in rng.integers(50, CROP - 50, 2))
    axes = tuple(int(v) for v in rng.integers(12, 30, 2))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return _blend(image, mask, RUST, soft=True), mask


def _patch(image: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = int(rng.integers(40, 72))
    sy, sx = rng.integers(0, other.shape[0] - size, 2)
    y, x = rng.integers(16, CROP - size - 16, 2)
    out = image.copy()
    out[y : y + size, x : x + size] = other[sy : sy + size, sx : sx + size]
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[y : y + size, x : x + size] = 255
    return out, mask


def _blend(image: np.ndarray, mask: np.ndarray, shade: tuple[float, float, float],
           soft: bool = False) -> np.ndarray:
    import cv2

    alpha = mask.astype(np.float32) / 255.0
    if soft:
        alpha = cv2.GaussianBlur(alpha, (0, 0), 2.0) * (mask > 0)
    alpha = 0.8 * alpha[..., None]
    blended = image.astype(np.float32) * (1 - alpha) + np.asarray(shade, np.float32) * alpha
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _write_dataset(root: Path, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    texture, other = _texture(TEXTURE), _texture("grass")
    for folder in ("good", "defect", "masks"):
        (root / folder).mkdir(parents=True)
    for index in range(N_GOOD):
        Image.fromarray(_normal_crop(texture, rng)).save(root / "good" / f"good_{index:03d}.png")
    for index in range(N_DEFECT):
        kind = DEFECT_KINDS[index % len(DEFECT_KINDS)]
        base = _normal_crop(texture, rng)
        if kind == "scratch":
            image, mask = _scratch(base, rng)
        elif kind == "blob":
            image, mask = _blob(base, rng)
        else:
            image, mask = _patch(base, rng, other)
        stem = f"{kind}_{index:02d}"
        Image.fromarray(image).save(root / "defect" / f"{stem}.png")
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
