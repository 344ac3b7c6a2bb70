"""Image decoding: every odd input either becomes RGB uint8 or fails with a clear ImageError."""

import io

import numpy as np
import pytest
from PIL import Image

from iadbe import constants
from iadbe.errors import ImageError
from iadbe.images import load_image, to_batch


def _png_bytes(image: Image.Image, fmt="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "RGB", "LA"])
def test_modes_become_rgb(mode, tmp_path):
    base = Image.fromarray((np.arange(64 * 48) % 251).astype(np.uint8).reshape(48, 64)).convert("RGB")
    image = base.convert(mode) if mode != "I;16" else Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16))
    fmt = "TIFF" if mode in {"CMYK", "I;16"} else "PNG"
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(_png_bytes(image, fmt))
    rgb = load_image(path)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8


def test_16_bit_uses_full_range():
    array = np.full((16, 16), 65535, np.uint16)
    assert load_image(array).max() == 255


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90
    rgb = load_image(_png_bytes(image, "JPEG", exif=exif))
    assert rgb.shape[:2] == (40, 20)


def test_animated_gif_takes_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    rgb = load_image(buffer.getvalue())
    assert rgb.shape == (20, 20, 3)


@pytest.mark.parametrize("payload, message", [
    (b"", "empty"),
    (b"not an image at all", "not an image"),
])
def test_bad_files(tmp_path, payload, message):
    path = tmp_path / "bad.png"
    path.write_bytes(payload)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_truncated_png(tmp_path):
    data = _png_bytes(Image.new("RGB", (200, 200), "white"))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated|corrupt"):
        load_image(path)


def test_tiny_image_is_refused():
    with pytest.raises(ImageError, match="too small"):
        load_image(Image.new("RGB", (1, 1)))


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "MAX_IMAGE_PIXELS", 10_000)
    path = tmp_path / "big.png"
    Image.new("L", (200, 200)).save(path)
    with pytest.raises(ImageError, match="limit"):
        load_image(path)


def test_to_batch_shape_and_range():
    batch = to_batch([np.full((30, 50, 3), 255, np.uint8)], (64, 64))
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    assert batch.max() == pytest.approx(1.0)
