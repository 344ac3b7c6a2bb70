"""Decode user images safely into RGB uint8 arrays, and turn them into model input.

Handles grayscale, RGBA, palette, CMYK, 16-bit, EXIF rotation and animated files (first
frame); refuses non-images, truncated files, images that are too small, and decompression
bombs, always with an :class:`~iadbe.errors.ImageError` that says what is wrong.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Union

import numpy as np

from iadbe import constants
from iadbe.errors import ImageError

ImageInput = Union[str, Path, bytes, np.ndarray, Any]  # Any: PIL.Image.Image
MIN_SIDE = 8


def load_image(source: ImageInput, name: str | None = None) -> np.ndarray:
    """Return ``source`` as an (H, W, 3) uint8 RGB array.

    Args:
        source: a path, raw bytes, a PIL image or a numpy array (HxW, HxWx1/3/4; uint8, uint16 or float in [0, 1]).
        name: how to call the image in error messages (defaults to the path).
    Raises:
        ImageError: the input is not a usable image.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "image")
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, label)
    from PIL import Image

    if isinstance(source, Image.Image):
        return _pil_to_rgb(source, label)
    if isinstance(source, (bytes, bytearray)):
        return _decode(io.BytesIO(source), label)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{label}: no such file")
        if path.stat().st_size == 0:
            raise ImageError(f"{label}: the file is empty (0 bytes)")
        with path.open("rb") as handle:
            return _decode(handle, label)
    raise ImageError(f"{label}: unsupported input type {type(source).__name__}")


def _decode(handle: Any, label: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    # Pillow's own guard stays on (it protects every other decode in the process: Gradio's, anomalib's):
    # it refuses images above twice Image.MAX_IMAGE_PIXELS; ours, usually lower, says more.
    try:
        image = Image.open(handle)
        width, height = image.size
        if width * height > constants.MAX_IMAGE_PIXELS:
            raise ImageError(
                f"{label}: {width}x{height} pixels is above the limit of {constants.MAX_IMAGE_PIXELS:,} "
                "(possible decompression bomb); downscale the image first"
            )
        image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own guard (above 2 x Image.MAX_IMAGE_PIXELS): say the size
        width, height = _header_size(handle) or (0, 0)
        size = f"{width}x{height} pixels" if width else "the image"
        raise ImageError(f"{label}: {size} is above the limit of {constants.MAX_IMAGE_PIXELS:,} "
                         "(possible decompression bomb); downscale the image first") from None
    except UnidentifiedImageError:
        kind = _format_from_magic(handle)
        if kind:
            raise ImageError(f"{label}: starts like a {kind} file but is truncated or corrupt") from None
        raise ImageError(f"{label}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{label}: the image file is truncated or corrupt ({error})") from None
    return _pil_to_rgb(image, label)


def _header_size(handle: Any) -> tuple[int, int] | None:
    """(width, height) from the header through Pillow's format readers, which parse the header only; used
    where ``Image.open`` refused the image before telling its size."""
    from PIL import Image

    Image.init()
    for kind in Image.ID:
        factory, accept = Image.OPEN[kind]
        try:
            handle.seek(0)
            if accept is not None and not accept(handle.read(16)):
                continue
            handle.seek(0)
            return factory(handle, "").size
        except Exception:  # noqa: BLE001 - not this format
            continue
    return None


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def _format_from_magic(handle: Any) -> str | None:
    """The image format the first bytes announce (None when they announce none): a file Pillow cannot
    identify but that starts like a PNG is a broken PNG, not "not an image"."""
    try:
        handle.seek(0)
        head = handle.read(16)
    except (OSError, ValueError):
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def _pil_to_rgb(image: Any, label: str) -> np.ndarray:
    from PIL import ImageOps

    if getattr(image, "is_animated", False):
        image.seek(0)
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, TypeError):
        pass  # a broken EXIF block must not reject an otherwise fine image
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        return _array_to_rgb(np.asarray(image), label)
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        return _check_size(np.asarray(image)[..., :3].copy(), label)
    return _check_size(np.asarray(image.convert("RGB")), label)


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"{label}: expected an HxW or HxWx3/4 array, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        rgb = array
    elif array.dtype in (np.uint16, np.int32, np.uint32, np.int64) or (
        np.issubdtype(array.dtype, np.integer) and array.max(initial=0) > 255
    ):
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        rgb = np.clip(array.astype(np.float32) / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(f"{label}: the array holds NaN or infinite values")
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        rgb = np.clip(array * scale + 0.5, 0, 255).astype(np.uint8)
    else:
        rgb = array.astype(np.uint8)
    return _check_size(np.ascontiguousarray(rgb), label)


def _check_size(rgb: np.ndarray, label: str) -> np.ndarray:
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"{label}: {width}x{height} is too small (at least {MIN_SIDE}x{MIN_SIDE} pixels)")
    if height * width > constants.MAX_IMAGE_PIXELS:
        raise ImageError(f"{label}: {width}x{height} pixels is above the limit of {constants.MAX_IMAGE_PIXELS:,}")
    return rgb


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (H, W) with area averaging when shrinking (antialiased) and bilinear when enlarging."""
    import cv2

    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = rgb.shape[0] > height or rgb.shape[1] > width
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def to_batch(images: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Stack RGB uint8 images into a float32 N x 3 x H x W batch in [0, 1] at the model's size."""
    batch = np.empty((len(images), 3, *size), dtype=np.float32)
    for index, rgb in enumerate(images):
        batch[index] = resize_rgb(rgb, size).transpose(2, 0, 1)
    batch *= 1.0 / 255.0
    return batch
