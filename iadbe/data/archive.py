"""Safe extraction of user-uploaded dataset zips.

Refused: path traversal (``../``, absolute paths, drive letters), symlinks and other special files,
encrypted members, nested archives, more than ``MAX_ZIP_FILES`` members, more than ``MAX_ZIP_BYTES``
in total, and a member whose compression ratio is above ``MAX_ZIP_RATIO``. Members are streamed to
disk with a running byte count, so lying headers cannot get past the limits.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from iadbe import constants
from iadbe.errors import DatasetError

NESTED_ARCHIVES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar")
#: The ratio limit applies to members at least this large (small files, e.g. all-black
#: masks, compress far beyond any ratio without being a bomb; the total limit covers them).
RATIO_MIN_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024
_MARKER = ".iadbe_extracted.json"


def _member_path(name: str) -> PurePosixPath | None:
    """The safe relative path of a member; None for entries to skip (``__MACOSX``, hidden files).

    Raises:
        DatasetError: absolute path, drive letter, ``..`` component or NUL byte.
    """
    clean = name.replace("\\", "/")
    if "\x00" in clean or clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise DatasetError(f"Unsafe path in zip (absolute or drive letter): {name!r}")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetError(f"Unsafe path in zip (path traversal): {name!r}")
    if not parts or any(p == "__MACOSX" or p.startswith(".") for p in parts):
        return None
    return PurePosixPath(*parts)


def _check_member(info: zipfile.ZipInfo) -> None:
    """Refuse symlinks and special files, encrypted members, nested archives and high ratios."""
    file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip tool stored no Unix type
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = "symbolic link" if file_type == stat.S_IFLNK else "special file"
        raise DatasetError(f"Zip member {info.filename!r} is a {kind}; only plain files and folders are accepted")
    if info.flag_bits & 0x1:
        raise DatasetError(f"Zip member {info.filename!r} is encrypted; upload an unencrypted zip")
    if info.is_dir():
        return
    if info.filename.lower().endswith(NESTED_ARCHIVES):
        raise DatasetError(f"Zip member {info.filename!r} is an archive inside the archive; "
                           "extract it and zip the folders directly")
    if info.file_size >= RATIO_MIN_BYTES and info.file_size > constants.MAX_ZIP_RATIO * max(info.compress_size, 1):
        raise DatasetError(f"Zip member {info.filename!r} has a compression ratio above {constants.MAX_ZIP_RATIO} "
                           "(zip bomb?)")


def _plan(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Check every header before anything is written; returns the members to extract."""
    infos = archive.infolist()
    if len(infos) > constants.MAX_ZIP_FILES:
        raise DatasetError(f"Zip has {len(infos)} members; the limit is {constants.MAX_ZIP_FILES} "
                           "(IADBE_MAX_ZIP_FILES)")
    total = sum(info.file_size for info in infos)
    if total > constants.MAX_ZIP_BYTES:
        raise DatasetError(f"Zip would extract to {total} bytes; the limit is {constants.MAX_ZIP_BYTES} "
                           "(IADBE_MAX_ZIP_BYTES)")
    plan, seen = [], set()
    for info in infos:
        path = _member_path(info.filename)
        if path is None:
            continue
        _check_member(info)
        key = str(path).lower()
        if key in seen and not info.is_dir():
            raise DatasetError(f"Zip holds {info.filename!r} twice")
        seen.add(key)
        plan.append((info, path))
    return plan


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Stream one member to ``target``, stopping at the byte budget or at the ratio limit; returns bytes."""
    limit = max(RATIO_MIN_BYTES, constants.MAX_ZIP_RATIO * max(info.compress_size, 1))
    written = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as source, target.open("xb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise DatasetError(f"Zip extracts to more than {constants.MAX_ZIP_BYTES} bytes (IADBE_MAX_ZIP_BYTES)")
            if written > limit:
                raise DatasetError(f"Zip member {info.filename!r} expands beyond its compression-ratio limit "
                                   f"({constants.MAX_ZIP_RATIO}); zip bomb?")
            sink.write(chunk)
    return written


def safe_extract_zip(zip_path: str | Path, dest_dir: str | Path) -> Path:
    """Extract a user's zip into ``dest_dir`` (missing or empty) and return the dataset root inside.

    The root is the single top folder when the zip holds only one, else ``dest_dir``.
    On any refusal nothing extracted is left behind.

    Raises:
        DatasetError: corrupt zip, unsafe member (see module docstring), ``dest_dir`` not empty.
    """
    zip_path, dest = Path(zip_path), Path(dest_dir)
    if not zip_path.is_file():
        raise DatasetError(f"Zip file not found: {zip_path}")
    if dest.exists() and any(dest.iterdir()):
        raise DatasetError(f"Extraction folder {dest} is not empty")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _extract(zip_path, dest)
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            _empty(dest)
        raise
    return _single_top(dest)


def _extract(zip_path: Path, dest: Path) -> None:
    """Check all headers, then stream member by member; BadZipFile becomes DatasetError."""
    base = dest.resolve()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            budget = constants.MAX_ZIP_BYTES
            for info, path in _plan(archive):
                target = base.joinpath(*path.parts)
                if not target.resolve().is_relative_to(base):
                    raise DatasetError(f"Unsafe path in zip: {info.filename!r}")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                budget -= _copy_member(archive, info, target, budget)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DatasetError(f"{zip_path.name} is not a valid zip file ({exc}); re-create the archive") from exc
    except NotImplementedError as exc:
        raise DatasetError(f"{zip_path.name} uses an unsupported compression method ({exc})") from exc


def _empty(folder: Path) -> None:
    """Remove everything inside ``folder``."""
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _single_top(dest: Path) -> Path:
    """The only top-level folder when there is exactly one entry, else ``dest``."""
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def resolve_dataset_root(path: str | Path, extract_dir: str | Path | None = None) -> Path:
    """A dataset folder as is, or a .zip extracted once (default ``IADBE_HOME/uploads/<sha256>``).

    Raises:
        DatasetError: the path is missing or is neither a folder nor a zip.
    """
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        return path
    if not path.exists():
        raise DatasetError(f"Dataset root not found: {path}")
    if not (path.is_file() and zipfile.is_zipfile(path)):
        raise DatasetError(f"{path} is neither a folder nor a zip file")
    cache = constants.IADBE_HOME / "uploads" / _sha256(path)[:20]
    dest = Path(extract_dir) if extract_dir else cache
    marker = dest / _MARKER
    if marker.is_file():
        root = dest / json.loads(marker.read_text(encoding="utf-8"))["root"]
        if root.is_dir():
            return root
    if dest == cache and dest.exists():
        shutil.rmtree(dest)  # an interrupted earlier extraction of the same zip
    root = safe_extract_zip(path, dest)
    marker.write_text(json.dumps({"root": str(root.relative_to(dest)), "zip": str(path)}), encoding="utf-8")
    return root


def _sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
