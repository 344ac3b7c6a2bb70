"""Safe extraction of uploaded zips: every attack is refused and leaves nothing behind."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iadbe import constants
from iadbe.data import load_dataset, resolve_dataset_root, safe_extract_zip
from iadbe.errors import DatasetError


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "iadbe_home"
    monkeypatch.setattr(constants, "IADBE_HOME", home)
    return home


def png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str | zipfile.ZipInfo, bytes],
             compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def refused(zip_path: Path, dest: Path, match: str) -> None:
    """Extraction raises DatasetError matching ``match`` and leaves no folder behind."""
    with pytest.raises(DatasetError, match=match):
        safe_extract_zip(zip_path, dest)
    assert not dest.exists()


def test_valid_zip_returns_single_top_folder_and_skips_junk(tmp_path: Path) -> None:
    members = {f"parts/good/{i}.png": png_bytes(i) for i in range(10)}
    members |= {f"parts/defect/d{i}.png": png_bytes(100 + i) for i in range(2)}
    members |= {"__MACOSX/parts/._0.png": b"junk", "parts/.DS_Store": b"junk", "parts/good/": b""}
    zip_path = make_zip(tmp_path / "upload.zip", members)
    root = safe_extract_zip(zip_path, tmp_path / "out")
    assert root == tmp_path / "out" / "parts"
    assert sorted(p.name for p in root.iterdir()) == ["defect", "good"]
    assert not (tmp_path / "out" / "__MACOSX").exists()
    assert resolve_dataset_root(zip_path) == resolve_dataset_root(zip_path)  # extracted once, reused
    splits = load_dataset("folder", zip_path)
    assert splits.layout == "good_defect" and sum(s.is_anomalous for s in splits.test) == 2


def test_zip_with_several_top_entries_returns_dest(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "u.zip", {"good/0.png": png_bytes(0), "defect/1.png": png_bytes(1)})
    assert safe_extract_zip(zip_path, tmp_path / "out") == tmp_path / "out"


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "..\\evil.png"])
def test_traversal_refused(tmp_path: Path, name: str) -> None:
    zip_path = make_zip(tmp_path / "t.zip", {"ok/0.png": png_bytes(0), zipfile.ZipInfo(name): b"x"})
    refused(zip_path, tmp_path / "out", "traversal")
    assert not (tmp_path / "evil.png").exists()


@pytest.mark.parametrize("name", ["/etc/evil.png", "C:/evil.png", "c:evil.png", "\\\\server\\evil.png"])
def test_absolute_and_drive_paths_refused(tmp_path: Path, name: str) -> None:
    zip_path = make_zip(tmp_path / "a.zip", {zipfile.ZipInfo(name): b"x"})
    refused(zip_path, tmp_path / "out", "absolute or drive")


def test_symlink_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("parts/link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zip_path = make_zip(tmp_path / "s.zip", {"parts/0.png": png_bytes(0), link: b"/etc/passwd"})
    refused(zip_path, tmp_path / "out", "symbolic link")


def test_ratio_bomb_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "bomb.zip", {"parts/zeros.bmp": bytes(4 * 1024 * 1024)})
    refused(zip_path, tmp_path / "out", "compression ratio")


def test_small_highly_compressible_files_allowed(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "masks.zip", {"parts/black_mask.bmp": bytes(200_000)})
    assert safe_extract_zip(zip_path, tmp_path / "out").name == "parts"


def test_too_many_files_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "MAX_ZIP_FILES", 3)
    zip_path = make_zip(tmp_path / "many.zip", {f"p/{i}.png": png_bytes(i) for i in range(5)})
    refused(zip_path, tmp_path / "out", "members")


def test_total_size_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "MAX_ZIP_BYTES", 5000)
    zip_path = make_zip(tmp_path / "big.zip", {f"p/{i}.png": png_bytes(i) for i in range(3)})
    refused(zip_path, tmp_path / "out", "bytes")


def test_lying_size_header_refused(tmp_path: Path) -> None:
    """Headers claim 1000 bytes for a 3 MiB member: the stream stops and the CRC check refuses it."""
    zip_path = make_zip(tmp_path / "liar.zip", {"p/zeros.bmp": bytes(3 * 1024 * 1024)})
    data = bytearray(zip_path.read_bytes())
    real = struct.pack("<I", 3 * 1024 * 1024)
    for offset in _all(data, real):
        data[offset:offset + 4] = struct.pack("<I", 1000)
    zip_path.write_bytes(bytes(data))
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.infolist()[0].file_size == 1000
    refused(zip_path, tmp_path / "out", "not a valid zip")


def _all(data: bytearray, needle: bytes) -> list[int]:
    found, start = [], 0
    while (index := data.find(needle, start)) >= 0:
        found.append(index)
        start = index + 1
    return found


def test_nested_zip_refused(tmp_path: Path) -> None:
    inner = make_zip(tmp_path / "inner.zip", {"x.png": png_bytes(0)}).read_bytes()
    zip_path = make_zip(tmp_path / "outer.zip", {"parts/0.png": png_bytes(1), "parts/more.ZIP": inner})
    refused(zip_path, tmp_path / "out", "archive inside the archive")


def test_encrypted_member_refused(tmp_path: Path) -> None:
    """zipfile cannot write encrypted members: set the 'encrypted' flag bit in both headers by hand."""
    zip_path = make_zip(tmp_path / "enc.zip", {"parts/0.png": png_bytes(0)}, zipfile.ZIP_STORED)
    data = bytearray(zip_path.read_bytes())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature) + flag_offset
        data[at] |= 0x1
    zip_path.write_bytes(bytes(data))
    refused(zip_path, tmp_path / "out", "encrypted")


def test_corrupt_zips_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not a zip at all" * 10)
    refused(junk, tmp_path / "out1", "not a valid zip")
    with pytest.raises(DatasetError, match="neither a folder nor a zip"):
        resolve_dataset_root(junk)
    good = make_zip(tmp_path / "good.zip", {f"p/{i}.png": png_bytes(i) for i in range(3)})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:-60])
    refused(truncated, tmp_path / "out2", "not a valid zip")
    flipped = bytearray(good.read_bytes())
    flipped[60:80] = bytes(20)  # inside the first member's data: CRC mismatch while streaming
    (tmp_path / "flipped.zip").write_bytes(bytes(flipped))
    refused(tmp_path / "flipped.zip", tmp_path / "out3", "not a valid zip")


def test_destination_must_be_empty_and_zip_exist(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "u.zip", {"p/0.png": png_bytes(0)})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        safe_extract_zip(zip_path, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    with pytest.raises(DatasetError, match="not found"):
        safe_extract_zip(tmp_path / "missing.zip", tmp_path / "out")
    with pytest.raises(DatasetError, match="not found"):
        resolve_dataset_root(tmp_path / "missing.zip")
