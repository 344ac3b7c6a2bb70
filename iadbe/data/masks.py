"""Masks IADBE writes itself: LOCO multi-mask folders merged, YOLO boxes/polygons rasterised."""

from __future__ import annotations

from pathlib import Path

from iadbe.data.files import header_size, listed
from iadbe.errors import DatasetError

#: One YOLO label line: class id and normalised box (cx, cy, w, h) or polygon (x1 y1 x2 y2 ...).
Shape = tuple[int, list[float]]


def merge_masks(masks: list[Path], out: Path) -> Path:
    """Union of several binary masks of one image, written as one 0/255 PNG (kept if present)."""
    if out.is_file():
        return out
    import numpy as np
    from PIL import Image

    union = None
    for path in masks:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L")) > 0
        if union is not None and arr.shape != union.shape:
            raise DatasetError(f"Masks of one image have different sizes: {listed(masks)}")
        union = arr if union is None else union | arr
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    Image.fromarray((union * 255).astype("uint8")).save(tmp)
    tmp.replace(out)
    return out


def parse_yolo_labels(label_file: Path) -> list[Shape]:
    """Shapes of a YOLO label file; [] for an empty file. Bad lines raise :class:`DatasetError`."""
    shapes: list[Shape] = []
    for number, line in enumerate(label_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls, coords = int(float(fields[0])), [float(v) for v in fields[1:]]
        except ValueError:
            raise DatasetError(f"{label_file}:{number}: not a YOLO label line: {line.strip()!r}") from None
        if len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
            raise DatasetError(
                f"{label_file}:{number}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...' "
                f"(normalised), got {len(coords)} numbers"
            )
        shapes.append((cls, coords))
    return shapes


def rasterise_shapes(image: Path, shapes: list[Shape], out: Path) -> Path:
    """Draw the shapes (boxes as rectangles, polygons filled) into a 0/255 mask of the image's size."""
    if out.is_file():
        return out
    from PIL import Image, ImageDraw

    width, height = header_size(image)
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for _, coords in shapes:
        if len(coords) == 4:
            cx, cy, w, h = coords
            box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
            draw.rectangle([max(0, box[0]), max(0, box[1]), min(width - 1, box[2]), min(height - 1, box[3])], fill=255)
        else:
            points = [(x * width, y * height) for x, y in zip(coords[::2], coords[1::2], strict=True)]
            draw.polygon(points, fill=255)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    mask.save(tmp)
    tmp.replace(out)
    return out
