"""File helpers of the dataset stage: listing images, pairing masks, cheap header checks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from iadbe import constants
from iadbe.errors import DatasetError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
#: Suffixes a mask's stem may carry on top of its image's stem (``000.png`` <-> ``000_mask.png``).
MASK_SUFFIXES = ("", "_mask", "_label", "_gt", "_GT", "_seg")
#: How many file names an error message lists before "... and N more".
MAX_LISTED = 10


def is_hidden(path: Path) -> bool:
    """True for dot files, AppleDouble files and anything under ``__MACOSX``."""
    return any(part.startswith(".") or part == "__MACOSX" for part in path.parts)


def is_image(path: Path) -> bool:
    """True for a visible file with an image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Sorted image files of ``folder`` (hidden files and ``__MACOSX`` skipped); [] if it is missing."""
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if is_image(p) and not is_hidden(p.relative_to(folder)))


def subdirs(folder: Path) -> list[Path]:
    """Sorted visible sub-folders of ``folder``; [] if it is missing."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(Path(p.name)))


def find_child(folder: Path, names: Iterable[str]) -> Path | None:
    """First sub-folder of ``folder`` whose name (case-insensitive) is in ``names``, in that order."""
    by_name = {p.name.lower(): p for p in subdirs(folder)}
    for name in names:
        if name.lower() in by_name:
            return by_name[name.lower()]
    return None


def listed(paths: Iterable[object]) -> str:
    """'a, b, c ... and 4 more' for error messages."""
    items = [str(p) for p in paths]
    head = ", ".join(items[:MAX_LISTED])
    return head + (f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def mask_key(mask: Path) -> str:
    """The image stem a mask file belongs to (``000_mask.png`` -> ``000``)."""
    stem = mask.stem
    for suffix in MASK_SUFFIXES[1:]:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


class MaskIndex:
    """Masks of one folder, looked up by image stem (also LOCO's ``<stem>/000.png`` sub-folders)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, list[Path]] = {}
        for path in list_images(folder):
            self.files.setdefault(path.stem, []).append(path)
        self.dirs = {d.name: list_images(d) for d in subdirs(folder)}
        self.used: set[str] = set()

    def lookup(self, image: Path) -> list[Path]:
        """Mask files of ``image`` (several only for a LOCO mask folder); [] if none."""
        stem = image.stem
        for suffix in MASK_SUFFIXES:
            hits = self.files.get(stem + suffix)
            if hits:
                self.used.add(stem + suffix)
                return hits[:1]
        if self.dirs.get(stem):
            self.used.add(stem)
            return self.dirs[stem]
        return []

    def unused(self) -> list[Path]:
        """Masks that no image asked for (a sign of mismatched names)."""
        left = [p for key, paths in self.files.items() if key not in self.used for p in paths]
        left += [self.folder / key for key, paths in self.dirs.items() if paths and key not in self.used]
        return sorted(left)


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header only (no full decode)."""
    from PIL import Image

    with Image.open(path) as img:
        return img.size


def cache_key(paths: Iterable[Path], *extra: object) -> str:
    """Hash of file paths with their size and mtime (so edited files give a new key) plus ``extra``."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest.update(repr(extra).encode())
    return digest.hexdigest()[:20]


def derived_dir(kind: str, key: str) -> Path:
    """Folder for files IADBE derives from a dataset (merged or rasterised masks)."""
    return constants.IADBE_HOME / "derived" / kind / key


def natural_key(path: Path) -> list[object]:
    """Sort key that puts ``Part2`` before ``Part10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def require(condition: bool, message: str) -> None:
    """Raise :class:`DatasetError` with ``message`` unless ``condition``."""
    if not condition:
        raise DatasetError(message)
