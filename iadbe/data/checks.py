"""Cheap file checks before training: headers readable, masks the size of their images, sizes within limits.

Only image headers are read (PIL opens lazily), never the pixels.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from iadbe import constants
from iadbe.data.files import header_size, listed
from iadbe.data.samples import Sample
from iadbe.errors import DatasetError


def _size_or_none(path: Path) -> tuple[int, int] | None:
    """(width, height); None when the header cannot be read; (0, 0) for an image so large that Pillow's
    decompression-bomb guard refuses even to open it (above twice ``PIL.Image.MAX_IMAGE_PIXELS``)."""
    from PIL import Image

    try:
        return header_size(path)
    except Image.DecompressionBombError:
        return (0, 0)
    except (OSError, ValueError, SyntaxError):
        return None


def check_files(samples: list[Sample], root: Path) -> list[str]:
    """Check every image and mask header; returns notes (image sizes).

    Raises:
        DatasetError: unreadable files, images over ``constants.MAX_IMAGE_PIXELS``, masks whose size
            differs from their image's; each message lists the files.
    """
    sizes: Counter[tuple[int, int]] = Counter()
    unreadable, too_big, mismatched = [], [], []
    for sample in samples:
        size = _size_or_none(sample.image)
        if size is None:
            unreadable.append(_rel(sample.image, root))
            continue
        if size == (0, 0):
            too_big.append(f"{_rel(sample.image, root)} (above Pillow's decompression-bomb limit)")
            continue
        sizes[size] += 1
        if size[0] * size[1] > constants.MAX_IMAGE_PIXELS:
            too_big.append(f"{_rel(sample.image, root)} ({size[0]}x{size[1]})")
        if sample.mask is not None:
            mask_size = _size_or_none(sample.mask)
            if mask_size is None:
                unreadable.append(_rel(sample.mask, root))
            elif mask_size != size:
                mismatched.append(f"{_rel(sample.image, root)} {size[0]}x{size[1]} vs mask "
                                  f"{_rel(sample.mask, root)} {mask_size[0]}x{mask_size[1]}")
    _raise_if(unreadable, "Files that are not readable images (corrupt or wrong extension)")
    _raise_if(too_big, f"Images above {constants.MAX_IMAGE_PIXELS} pixels (IADBE_MAX_IMAGE_PIXELS)")
    _raise_if(mismatched, "Masks whose size differs from their image's (W x H)")
    return [_size_note(sizes)] if sizes else []


def _raise_if(items: list[str], what: str) -> None:
    """DatasetError listing ``items`` when there are any."""
    if items:
        raise DatasetError(f"{what}: {listed(items)}")


def _rel(path: Path, root: Path) -> str:
    """Path relative to the dataset root when it is inside, else the full path."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _size_note(sizes: Counter[tuple[int, int]]) -> str:
    """'image size 341x256 (W x H)' or 'mixed image sizes (W x H): ...'."""
    if len(sizes) == 1:
        (w, h), = sizes
        return f"image size {w}x{h} (W x H)"
    common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(5))
    more = f" and {len(sizes) - 5} more" if len(sizes) > 5 else ""
    return f"mixed image sizes (W x H): {common}{more}; images are resized to the model input size"
