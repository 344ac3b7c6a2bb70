"""A corpus of hostile and odd inputs, written on demand into a folder, with the outcome each must get.

Every case is a :class:`Case`: what kind of input it is (``image``, ``zip``, ``model``, ``setting``), how to
write it, and the expected outcome: ``ACCEPTED`` or a regular expression the rejection message must match.
``tests/test_corpus.py`` drives each case through the library, the CLI and the running app.

Files are generated, not stored: most are a few kB; the largest is the 20,050-member zip (about 2.4 MB),
and the ratio bomb holds 16 MiB of zeros in about 16 kB.

Usage::

    cases = write_corpus(tmp_path)            # every case's file under tmp_path/<kind>/
    for case in cases: case.kind, case.name, case.path, case.expect

or ``python tests/corpus.py OUT_DIR [MODEL_DIR]``, which also writes ``OUT_DIR/manifest.json`` (every case with
its expected outcome).
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

ACCEPTED = "accepted"


@dataclass(frozen=True)
class Case:
    """One input and the outcome it must get.

    ``expect`` is :data:`ACCEPTED` or a regex searched in the error message. ``shape`` (images) is the
    (H, W) the decoded RGB array must have. ``value`` (settings) is the setting's value.
    """

    kind: str
    name: str
    expect: str
    path: Path | None = None
    value: Any = None
    shape: tuple[int, int] | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.expect == ACCEPTED


# --------------------------------------------------------------------------- helpers
def encode(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def texture(seed: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A noisy RGB texture (distinct per seed) as uint8 H x W x 3."""
    rng = np.random.default_rng(seed)
    base = rng.integers(80, 170, (1, 1, 3))
    return np.clip(base + rng.integers(-30, 30, (*size, 3)), 0, 255).astype(np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` (8-bit grey) but holds one tiny IDAT: a decompression bomb's
    header without its gigabytes (decoding it would need width*height bytes of memory)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))  # one row
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def exif_rotated_jpeg() -> bytes:
    """A 40x20 (W x H) JPEG whose EXIF orientation 6 says: rotate 90 degrees; decoded it is 20 wide, 40 high."""
    image = Image.fromarray(texture(7, (20, 40)))
    exif = image.getexif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif, quality=95)


def animated_gif() -> bytes:
    frames = [Image.fromarray(texture(seed, (24, 24))).convert("P") for seed in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] | None = None,
              compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip of ``members`` (name -> bytes) plus symbolic links (name -> target), written with zipfile."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def parts_members(top: str = "parts", good: int = 8, defects: int = 3, size: int = 64,
                  masks: str = "match", sizes: tuple[int, ...] = ()) -> dict[str, bytes]:
    """A ``good/`` + ``defect/`` + ``masks/`` dataset as zip members.

    Args:
        masks: ``match`` (one mask per defect, same name and size), ``renamed`` (no mask name matches),
            ``resized`` (masks half the image size), ``none``.
        sizes: image sizes to cycle through (mixed sizes); default all ``size``.
    """
    members: dict[str, bytes] = {}
    cycle = sizes or (size,)
    for index in range(good):
        side = cycle[index % len(cycle)]
        members[f"{top}/good/{index:03d}.png"] = encode(Image.fromarray(texture(index, (side, side))), "PNG")
    for index in range(defects):
        side = cycle[index % len(cycle)]
        image = texture(100 + index, (side, side))
        image[side // 4: side // 2, side // 4: side // 2] = 250
        members[f"{top}/defect/d{index:03d}.png"] = encode(Image.fromarray(image), "PNG")
        if masks == "none":
            continue
        mask_side = side // 2 if masks == "resized" else side
        mask = np.zeros((mask_side, mask_side), np.uint8)
        mask[mask_side // 4: mask_side // 2, mask_side // 4: mask_side // 2] = 255
        name = f"other{index:03d}.png" if masks == "renamed" else f"d{index:03d}.png"
        members[f"{top}/masks/{name}"] = encode(Image.fromarray(mask), "PNG")
    return members


def patch_sizes(path: Path, claimed: int) -> None:
    """Rewrite every member's uncompressed size in the central directory to ``claimed`` bytes."""
    data = bytearray(path.read_bytes())
    start = 0
    while (at := data.find(b"PK\x01\x02", start)) >= 0:
        data[at + 24: at + 28] = struct.pack("<I", claimed)
        start = at + 4
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- images
def _image_cases() -> list[tuple[str, str, Callable[[], bytes], str, tuple[int, int] | None]]:
    """(name, suffix, bytes factory, expect, decoded (H, W))."""
    rgb = Image.fromarray(texture(3, (48, 64)))
    png = encode(rgb, "PNG")
    jpeg = encode(Image.fromarray(texture(4, (120, 160))), "JPEG", quality=90)
    return [
        ("rgb_png", ".png", lambda: png, ACCEPTED, (48, 64)),
        ("not_an_image", ".png", lambda: b"hello, I am a text file pretending to be a PNG\n" * 20,
         r"not an image", None),
        ("html_as_jpeg", ".jpg", lambda: b"<html><script>alert(1)</script></html>", r"not an image", None),
        ("zip_as_png", ".png", lambda: _small_zip_bytes(), r"not an image", None),
        ("zero_bytes", ".png", lambda: b"", r"empty", None),
        ("truncated_png", ".png", lambda: encode(Image.fromarray(texture(5, (200, 200))), "PNG")[:3000],
         r"truncated|corrupt", None),
        ("truncated_jpeg", ".jpg", lambda: jpeg[: len(jpeg) // 2], r"truncated|corrupt", None),
        ("png_header_only", ".png", lambda: png[:33], r"starts like a PNG file but is truncated or corrupt", None),
        ("one_by_one", ".png", lambda: encode(Image.new("RGB", (1, 1), "red"), "PNG"), r"too small", None),
        ("sliver_4x400", ".png", lambda: encode(Image.new("RGB", (400, 4), "red"), "PNG"), r"too small", None),
        ("bomb_20000x20000", ".png", lambda: png_header_only(20000, 20000),
         r"20000x20000 pixels is above the limit", None),
        ("gray_16bit_png", ".png",
         lambda: encode(Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)), "PNG"),
         ACCEPTED, (48, 64)),
        ("gray_8bit_png", ".png", lambda: encode(rgb.convert("L"), "PNG"), ACCEPTED, (48, 64)),
        ("cmyk_jpeg", ".jpg", lambda: encode(rgb.convert("CMYK"), "JPEG"), ACCEPTED, (48, 64)),
        ("palette_png", ".png", lambda: encode(rgb.convert("P"), "PNG"), ACCEPTED, (48, 64)),
        ("palette_transparent_png", ".png", lambda: encode(rgb.convert("P"), "PNG", transparency=0),
         ACCEPTED, (48, 64)),
        ("rgba_png", ".png", lambda: encode(rgb.convert("RGBA"), "PNG"), ACCEPTED, (48, 64)),
        ("animated_gif", ".gif", animated_gif, ACCEPTED, (24, 24)),
        ("exif_rotated_jpeg", ".jpg", exif_rotated_jpeg, ACCEPTED, (40, 20)),
        ("float_tiff", ".tif", lambda: encode(Image.fromarray(np.linspace(0, 1, 48 * 64, dtype=np.float32)
                                                              .reshape(48, 64)), "TIFF"), ACCEPTED, (48, 64)),
        ("jpeg_named_png", ".png", lambda: jpeg, ACCEPTED, (120, 160)),
        ("webp", ".webp", lambda: encode(rgb, "WEBP"), ACCEPTED, (48, 64)),
        ("bmp", ".bmp", lambda: encode(rgb, "BMP"), ACCEPTED, (48, 64)),
    ]


def _small_zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    return buffer.getvalue()


def image_cases(folder: Path) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, suffix, make, expect, shape in _image_cases():
        path = folder / f"{name}{suffix}"
        path.write_bytes(make())
        cases.append(Case("image", name, expect, path, shape=shape))
    return cases


# --------------------------------------------------------------------------- dataset zips
def _zip_cases(folder: Path) -> list[Case]:
    good = parts_members()
    one_png = good["parts/good/000.png"]
    cases: list[Case] = []

    def add(name: str, expect: str, members: dict[str, bytes], **kwargs: Any) -> Path:
        path = write_zip(folder / f"{name}.zip", members, **{k: v for k, v in kwargs.items() if k != "note"})
        cases.append(Case("zip", name, expect, path, note=kwargs.get("note", "")))
        return path

    add("valid_parts", ACCEPTED, good)
    add("mixed_image_sizes", ACCEPTED, parts_members(sizes=(64, 96, 80), masks="match"),
        note="accepted; the report notes the mixed sizes")
    add("path_traversal", r"path traversal", {**good, "parts/../../evil.png": one_png})
    add("absolute_path", r"absolute", {**good, "/tmp/iadbe_evil.png": one_png})
    add("symlink_member", r"symbolic link", good, symlinks={"parts/good/passwd.png": "/etc/passwd"})
    add("ratio_bomb", r"compression ratio", {**good, "parts/good/zeros.bmp": bytes(16 * 1024 * 1024)},
        note="16 MiB of zeros in about 16 kB")
    total = add("total_size_bomb", r"would extract to \d+ bytes", dict(list(good.items())[:4]),
                note="central directory claims 4 x 0xFFFFFF00 bytes")
    patch_sizes(total, 0xFFFFFF00)
    add("too_many_files", r"members; the limit is", {f"parts/good/{i:05d}.txt": b"" for i in range(20_050)},
        note="20,050 empty members (limit 20,000)")
    add("thousands_of_tiny_non_images", r"no normal images|no images|no .*layout|not recogni",
        {f"parts/good/{i:04d}.txt": b"x" for i in range(3000)})
    add("nested_zip", r"archive inside the archive", {**good, "parts/more.zip": _small_zip_bytes()})
    add("no_normal_images", r"no normal images|normal images", {k: v for k, v in good.items() if "/good/" not in k})
    add("only_one_image", r"at least 2|normal images", {"parts/good/000.png": one_png})
    add("masks_do_not_match_names", r"mask", parts_members(masks="renamed"))
    add("masks_do_not_match_size", r"size", parts_members(masks="resized"))
    add("corrupt_image_inside", r"corrupt|truncated|not an image|cannot be read|unreadable",
        {**good, "parts/good/bad.png": b"\x89PNG\r\n\x1a\n" + os.urandom(200)})
    add("empty_zip", r"no images|empty|no .*layout|not recogni|normal images", {})
    not_zip = folder / "random_bytes.zip"
    not_zip.write_bytes(os.urandom(2048))
    cases.append(Case("zip", "random_bytes", r"neither a folder nor a zip|not a valid zip", not_zip))
    truncated = folder / "truncated.zip"
    truncated.write_bytes((folder / "valid_parts.zip").read_bytes()[:-100])
    cases.append(Case("zip", "truncated", r"neither a folder nor a zip|not a valid zip", truncated))
    return cases


def zip_cases(folder: Path) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)
    return _zip_cases(folder)


# --------------------------------------------------------------------------- model directories
def _rewrite_checksums(model_dir: Path) -> None:
    """Make ``iadbe.json``'s ``files`` list the current bytes, so loading gets past the checksum check."""
    import hashlib

    config = model_dir / "iadbe.json"
    meta = json.loads(config.read_text())
    for relative in list(meta.get("files") or {}):
        meta["files"][relative] = hashlib.sha256((model_dir / relative).read_bytes()).hexdigest()
    config.write_text(json.dumps(meta, indent=2))


def model_cases(folder: Path, good_model: Path) -> list[Case]:
    """Broken copies of ``good_model`` (a trained model directory) and pickled checkpoints.

    Each model case's ``extra['backend']`` is the backend to load it with.
    """
    import shutil

    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def copy(name: str) -> Path:
        target = folder / name
        shutil.copytree(good_model, target)
        return target

    def add(name: str, expect: str, path: Path, backend: str = "torch", note: str = "") -> None:
        cases.append(Case("model", name, expect, path, note=note, extra={"backend": backend}))

    add("intact_copy", ACCEPTED, copy("intact_copy"))

    pickle_file = folder / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, pickle_file)
    add("pickle_ckpt_file", r"pickled checkpoints are not loaded", pickle_file)
    pickle_dir = folder / "pickle_dir"
    pickle_dir.mkdir()
    torch.save({"w": torch.zeros(2)}, pickle_dir / "model.pt")
    add("folder_of_pickles", r"only pickled checkpoints", pickle_dir)

    pickled_weights = copy("pickle_as_safetensors")
    torch.save({"w": torch.zeros(2)}, pickled_weights / "weights.safetensors")
    _rewrite_checksums(pickled_weights)
    add("pickle_as_safetensors", r"not a valid safetensors", pickled_weights,
        note="a pickle named weights.safetensors, checksums updated: still never unpickled")

    truncated = copy("truncated_safetensors")
    weights = truncated / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    add("truncated_safetensors_checksum", r"checksum mismatch", truncated)
    truncated_listed = copy("truncated_safetensors_relisted")
    weights = truncated_listed / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _rewrite_checksums(truncated_listed)
    add("truncated_safetensors", r"not a valid safetensors file, truncated or corrupt", truncated_listed)

    foreign = copy("weights_do_not_fit")
    save_file({"conv.weight": torch.zeros(3, 3)}, str(foreign / "weights.safetensors"))
    _rewrite_checksums(foreign)
    add("weights_do_not_fit", r"weights do not fit the model", foreign)

    reshaped = copy("weights_wrong_shape")
    from safetensors.torch import load_file

    state = load_file(str(reshaped / "weights.safetensors"))
    parameter = _a_parameter_key(good_model)
    if parameter is not None:
        state[parameter] = torch.zeros(*[s + 1 for s in state[parameter].shape])
        save_file(state, str(reshaped / "weights.safetensors"))
        _rewrite_checksums(reshaped)
        add("weights_wrong_shape", r"weights do not fit the model", reshaped)

    bad_json = copy("config_not_json")
    (bad_json / "iadbe.json").write_text("{ this is not json")
    add("config_not_json", r"not valid JSON", bad_json)

    future = copy("config_future_schema")
    meta = json.loads((future / "iadbe.json").read_text())
    meta["schema_version"] = 99
    (future / "iadbe.json").write_text(json.dumps(meta))
    add("config_future_schema", r"schema version 99 is not supported", future)

    unknown = copy("config_unknown_model")
    meta = json.loads((unknown / "iadbe.json").read_text())
    meta["detector"]["model"] = "no_such_detector"
    meta["model"] = "no_such_detector"
    (unknown / "iadbe.json").write_text(json.dumps(meta))
    add("config_unknown_model", r"no_such_detector", unknown)

    no_config = copy("config_missing")
    (no_config / "iadbe.json").unlink()
    add("config_missing", r"iadbe.json.*missing|missing.*iadbe.json", no_config)

    if (good_model / "openvino" / "model.xml").is_file():
        broken_ir = copy("openvino_ir_corrupt")
        (broken_ir / "openvino" / "model.xml").write_text("<net><broken")
        _rewrite_checksums(broken_ir)
        add("openvino_ir_corrupt", r"OpenVINO|model.xml", broken_ir, backend="openvino")
    return cases


def _a_parameter_key(model_dir: Path) -> str | None:
    """A key of a learned parameter (not a data-sized buffer) in the stored weights, if any."""
    from safetensors.torch import load_file

    state = load_file(str(model_dir / "weights.safetensors"))
    for key in sorted(state):
        if key.endswith(".weight") and state[key].ndim == 4:  # a conv kernel of the backbone
            return key
    return None


# --------------------------------------------------------------------------- manifests
def manifest_cases(folder: Path) -> list[Case]:
    """Manifest files with a bad checksum format or an unknown model (checked offline by ``load_manifest``)."""
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        "id": "parts-padim", "display_name": "PaDiM parts", "model": "padim", "backbone": "tf_efficientnet_lite0",
        "dataset": "folder", "category": "parts", "repo_id": "someone/models", "path_in_repo": "padim/parts",
        "revision": "0" * 40, "files": {"iadbe.json": "a" * 64, "weights.safetensors": "b" * 64},
        "image_size": [64, 64], "license": "cc-by-nc-sa-4.0",
    }
    import yaml

    def add(name: str, expect: str, models: list[dict[str, Any]]) -> None:
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"models": models}, sort_keys=False))
        cases.append(Case("manifest", name, expect, path))

    cases: list[Case] = []
    add("manifest_valid", ACCEPTED, [entry])
    add("manifest_unknown_model", r"not a registered detector", [{**entry, "model": "gpt5_detector"}])
    add("manifest_bad_checksum_format", r"sha256|hex|64",
        [{**entry, "files": {"iadbe.json": "not-a-hash", "weights.safetensors": "b" * 64}}])
    add("manifest_unpinned_revision", r"revision|commit", [{**entry, "revision": "main"}])
    add("manifest_pickle_file", r"pickle|\.ckpt|not allowed|file",
        [{**entry, "files": {**entry["files"], "model.ckpt": "c" * 64}}])
    return cases


# --------------------------------------------------------------------------- settings
#: (name, setting, value, expected) for ``train`` / ``predict`` settings.
SETTINGS: list[tuple[str, str, Any, str]] = [
    ("image_size_ok", "image_size", 64, ACCEPTED),
    ("image_size_negative", "image_size", -64, r"image size must be"),
    ("image_size_zero", "image_size", 0, r"image size must be"),
    ("image_size_huge", "image_size", 100_000, r"image size must be between"),
    ("image_size_not_multiple_of_32", "image_size", 100, r"multiple of 32"),
    ("epochs_negative", "max_epochs", -1, r"epochs must be|0 \(default\) or positive"),
    ("epochs_huge", "max_epochs", 10**9, r"max epochs must be between"),
    ("threshold_ok", "threshold", 0.3, ACCEPTED),
    ("threshold_negative", "threshold", -0.1, r"threshold must be in \[0, 1\]"),
    ("threshold_above_one", "threshold", 1.5, r"threshold must be in \[0, 1\]"),
    ("threshold_nan", "threshold", float("nan"), r"threshold must be in \[0, 1\]"),
    ("max_train_images_negative", "max_train_images", -5, r"must be positive|0 \(default\) or positive"),
]


def setting_cases() -> list[Case]:
    return [Case("setting", name, expect, value=value, extra={"setting": setting})
            for name, setting, value, expect in SETTINGS]


def write_corpus(folder: Path, good_model: Path | None = None) -> list[Case]:
    """Every case (model cases only when ``good_model`` is given), files written under ``folder``."""
    cases = image_cases(folder / "images") + zip_cases(folder / "zips") + manifest_cases(folder / "manifests")
    if good_model is not None:
        cases += model_cases(folder / "models", good_model)
    return cases + setting_cases()


def write_manifest(cases: list[Case], path: Path) -> Path:
    """The cases as JSON: kind, name, file, expected outcome (``accepted`` or the message pattern), note."""
    rows = [{"kind": c.kind, "name": c.name, "file": str(c.path) if c.path else None,
             "value": None if c.value is None else repr(c.value), "expect": c.expect, "note": c.note}
            for c in cases]
    path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":  # python tests/corpus.py OUT_DIR [MODEL_DIR]: write the corpus and manifest.json
    import sys

    out = Path(sys.argv[1])
    written = write_corpus(out, Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(f"{len(written)} cases; manifest: {write_manifest(written, out / 'manifest.json')}")
