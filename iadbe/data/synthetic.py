"""Synthetic validation anomalies: anomalib's Perlin-noise generator, seeded per image, cached on disk.

One anomaly (image + 0/255 mask PNG) per validation normal. The folder is keyed by the source images
(path, size, mtime), the seed and :data:`GENERATOR_VERSION`, and reused when its manifest matches.
anomalib's ``make_synthetic_dataset`` is not used: it is unseeded, turns half of the normals into
anomalies (so they are lost as normals) and reads a texture folder (``./datasets/dtd``) we do not have.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from iadbe import constants
from iadbe.data.files import cache_key
from iadbe.data.samples import ANOMALOUS, SYNTHETIC_TYPE, Sample
from iadbe.errors import DatasetError

GENERATOR_VERSION = "anomalib-perlin-v2"
#: Blend of the Perlin texture into the image: anomalib's default range (DRAEM's training anomalies).
BLEND_FACTOR = (0.2, 1.0)
#: Smallest share of the image an anomaly may cover (Perlin masks are sometimes a few pixels).
MIN_AREA = 0.005
_ATTEMPTS = 30


def synthetic_key(normals: list[Sample], seed: int) -> str:
    """Cache key of the anomalies made from ``normals`` with ``seed``."""
    return cache_key(sorted(s.image for s in normals), seed, GENERATOR_VERSION, BLEND_FACTOR)


def make_synthetic_anomalies(normals: list[Sample], seed: int,
                             out_dir: Path | None = None) -> tuple[list[Sample], Path]:
    """One Perlin anomaly per normal image, written to ``out_dir`` (default: under ``IADBE_HOME/synthetic``).

    Returns the anomalous samples (``defect_type`` ``synthetic_perlin``, with masks) and the folder.
    """
    key = synthetic_key(normals, seed)
    out_dir = Path(out_dir) if out_dir is not None else constants.IADBE_HOME / "synthetic" / key
    cached = _read_manifest(out_dir, key)
    if cached is not None:
        return cached, out_dir
    samples = _generate_all(sorted(normals, key=lambda s: str(s.image)), seed, out_dir)
    _write_manifest(out_dir, key, samples)
    return samples, out_dir


def _read_manifest(out_dir: Path, key: str) -> list[Sample] | None:
    """The cached samples when the manifest matches ``key`` and every file is there."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key:
        return None
    samples = [Sample(out_dir / img, ANOMALOUS, out_dir / mask, SYNTHETIC_TYPE) for img, mask in manifest["files"]]
    return samples if all(s.image.is_file() and s.mask and s.mask.is_file() for s in samples) else None


def _write_manifest(out_dir: Path, key: str, samples: list[Sample]) -> None:
    """Write the manifest last, atomically: its presence means the folder is complete."""
    files = [[str(s.image.relative_to(out_dir)), str(s.mask.relative_to(out_dir))] for s in samples if s.mask]
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps({"key": key, "generator": GENERATOR_VERSION, "files": files}, indent=1))
    tmp.replace(out_dir / "manifest.json")


def _generate_all(normals: list[Sample], seed: int, out_dir: Path) -> list[Sample]:
    """Generate and save every anomaly; returns the samples."""
    from PIL import Image

    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    generator = _perlin_generator()
    samples = []
    for index, normal in enumerate(normals):
        image, mask = _generate_one(generator, normal.image, _image_seed(seed, index, normal.image))
        name = f"{index:04d}_{normal.image.stem}.png"
        Image.fromarray(image).save(out_dir / "images" / name)
        Image.fromarray(mask).save(out_dir / "masks" / name)
        samples.append(Sample(out_dir / "images" / name, ANOMALOUS, out_dir / "masks" / name, SYNTHETIC_TYPE))
    return samples


def _image_seed(seed: int, index: int, image: Path) -> int:
    """A per-image seed that depends on the run seed, the position and the file name only."""
    return int(hashlib.sha256(f"{seed}|{index}|{image.name}".encode()).hexdigest()[:8], 16)


def _perlin_generator():  # noqa: ANN202 - anomalib type, imported lazily
    """anomalib's generator: always applied, Perlin texture (no texture folder)."""
    from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

    return PerlinAnomalyGenerator(anomaly_source_path=None, probability=1.0, blend_factor=BLEND_FACTOR)


def _generate_one(generator, image_path: Path, seed: int):  # noqa: ANN001, ANN202
    """(RGB uint8 HxWx3, mask uint8 HxW 0/255) covering at least ``MIN_AREA``, deterministic for ``seed``."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(image_path) as img:
        rgb = np.asarray(img.convert("RGB"))
    tensor = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
    for attempt in range(_ATTEMPTS):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + attempt)
            augmented, mask = generator(tensor)
        if float(mask.float().mean()) >= MIN_AREA:
            out = (augmented.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            return out, (mask[0].numpy() > 0).astype(np.uint8) * 255
    raise DatasetError(f"Could not generate a synthetic anomaly from {image_path} (is the image blank?)")
