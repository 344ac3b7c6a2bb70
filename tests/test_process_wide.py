"""IADBE changes no library setting for the whole process (issue 16): a Space serves many people in one."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

LITE0 = "tf_efficientnet_lite0"


def test_a_rebuild_on_one_thread_leaves_another_threads_backbone_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a stored STFPM while a training builds its backbone: the training still gets ImageNet weights."""
    import safetensors.torch
    from anomalib.models.image.stfpm import lightning_model

    from iadbe.backbones import ensure_lite_weights
    from iadbe.models import create_detector, resolve_config

    pretrained = safetensors.torch.load_file(ensure_lite_weights(LITE0))
    inside, trained = threading.Event(), threading.Event()
    original = lightning_model.STFPMModel

    def held_open(*args, **kwargs):  # the rebuild pauses in the middle while the training builds its backbone
        inside.set()
        assert trained.wait(120)
        return original(*args, **kwargs)

    monkeypatch.setattr(lightning_model, "STFPMModel", held_open)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            create_detector(resolve_config("stfpm", LITE0, 64), pre_trained=False)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            inside.set()

    loader = threading.Thread(target=load)
    loader.start()
    assert inside.wait(120)
    try:
        training = create_detector(resolve_config("padim", LITE0, 64), pre_trained=True)
    finally:
        trained.set()
        loader.join(120)
    assert not errors, errors
    extractor = training.model.feature_extractor.feature_extractor
    stem = extractor.conv_stem.weight
    assert torch.equal(stem, pretrained["conv_stem.weight"])
    block = dict(extractor.named_parameters())["blocks.1.0.conv_pw.weight"]
    assert torch.equal(block, pretrained["blocks.1.0.conv_pw.weight"])


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` 1-bit pixels (Pillow opens it lazily from that)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((width + 7) // 8)
    pixels = zlib.compress(row * 8)  # a few rows: enough for the header, the rest "truncated"
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def test_a_bomb_in_a_training_zip_is_refused_and_pillows_guard_stays(tmp_path, monkeypatch) -> None:
    """IADBE once set PIL.Image.MAX_IMAGE_PIXELS = None for the process; every other decode lost its guard."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    from iadbe import constants
    from iadbe.data import load_dataset
    from iadbe.errors import DatasetError, ImageError
    from iadbe.images import load_image

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path / "home")
    guard = Image.MAX_IMAGE_PIXELS
    assert guard is not None
    small = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(small, format="PNG")
    load_image(small.getvalue())
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(_png_header_only(30_000, 30_000))  # 900 M pixels, far above both limits
    assert Image.MAX_IMAGE_PIXELS == guard

    members = {f"parts/good/{i}.png": small.getvalue() for i in range(6)}
    members |= {"parts/defect/0.png": small.getvalue(), "parts/defect/bomb.png": _png_header_only(30_000, 30_000)}
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(DatasetError, match=r"bomb\.png \(above Pillow's decompression-bomb limit\)"):
        load_dataset("folder", archive)
    assert Image.MAX_IMAGE_PIXELS == guard
    with pytest.raises(Image.DecompressionBombError):  # the process's own decodes are still guarded
        Image.open(io.BytesIO(_png_header_only(30_000, 30_000)))
