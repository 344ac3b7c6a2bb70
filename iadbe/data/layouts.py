"""Layout detection: which on-disk layout a folder has, and where the category folder is.

``detect_layout(folder)`` looks at the folder itself; ``locate`` also tries ``<root>/<category>``, VisA's
``visa_pytorch/<category>`` and, when no category is given, a single sub-folder (zip uploads often hold one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from iadbe.data import parsers, pools, yolo
from iadbe.data.files import find_child, list_images, listed, mask_key, subdirs
from iadbe.data.layout_help import LAYOUT_HELP
from iadbe.data.samples import RawSplits
from iadbe.errors import DatasetError

Parser = Callable[[Path, "str | None"], RawSplits]


def _has(root: Path, *parts: str) -> bool:
    """True when the nested folder exists (case-insensitive at each level)."""
    folder: Path | None = root
    for part in parts:
        folder = find_child(folder, [part]) if folder else None
    return folder is not None


def _is_kolektor(root: Path) -> bool:
    """A label image ``PartN_label.bmp`` next to its ``PartN.jpg``, at depth 1 or 2."""
    for folder in (root, *subdirs(root)):
        images = list_images(folder)
        stems = {p.stem for p in images}
        if any(pools.is_kolektor_label(p) and mask_key(p) in stems for p in images):
            return True
    return False


def _is_good_defect(root: Path) -> bool:
    """A ``good/`` (``normal/``, ``ok/``) folder with images."""
    normal_dir = find_child(root, pools.NORMAL_DIRS)
    return normal_dir is not None and bool(list_images(normal_dir, recursive=True))


#: (layout, probe, parser) in detection order: the most specific first.
LAYOUTS: tuple[tuple[str, Callable[[Path], bool], Parser], ...] = (
    ("yolo", yolo.is_yolo, yolo.parse_yolo),
    ("visa_csv", lambda r: (r / "split_csv" / "1cls.csv").is_file(), parsers.parse_visa_csv),
    ("mvtec3d", lambda r: _has(r, "train", "good", "rgb"), parsers.parse_mvtec3d),
    ("mvtec_loco", lambda r: _has(r, "train", "good") and _has(r, "validation", "good"), parsers.parse_mvtec_loco),
    ("mvtec", lambda r: _has(r, "train", "good"), parsers.parse_mvtec),
    ("btech", lambda r: _has(r, "train", "ok"), parsers.parse_btech),
    ("kolektor", _is_kolektor, pools.parse_kolektor),
    ("good_defect", _is_good_defect, pools.parse_good_defect),
)
LAYOUT_NAMES = tuple(name for name, _, _ in LAYOUTS)
#: Layouts whose dataset folder is a category folder (its name is the default category).
MVTEC_FAMILY = ("mvtec", "mvtec_loco", "mvtec3d", "btech", "visa_pytorch")
#: Layouts each ``kind`` of :func:`iadbe.data.load_dataset` accepts (``folder`` accepts all); its keys are
#: :data:`iadbe.data.kinds.KINDS`, in that order (tests/test_architecture.py).
KIND_LAYOUTS = {
    "mvtec": ("mvtec", "mvtec_loco"),
    "mvtec3d": ("mvtec3d",),
    "btech": ("btech",),
    "kolektor": ("kolektor",),
    "visa": ("visa_csv", "mvtec"),
    "folder": LAYOUT_NAMES,
}


def probe_layout(folder: Path) -> str | None:
    """Name of the first layout that fits ``folder``, or None."""
    if not folder.is_dir():
        return None
    return next((name for name, probe, _ in LAYOUTS if probe(folder)), None)


def detect_layout(root: str | Path) -> str:
    """Layout of ``root`` itself (one of :data:`LAYOUT_NAMES`).

    Raises:
        DatasetError: the folder is missing or its layout is none of the understood ones.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root}")
    layout = probe_layout(root)
    if layout is None:
        raise DatasetError(f"Unknown dataset layout in {root}.\n{LAYOUT_HELP}")
    return layout


def parser_of(layout: str) -> Parser:
    """The parser function of a layout name."""
    if layout == "visa_pytorch":
        return parsers.parse_visa_pytorch
    return next(parser for name, _, parser in LAYOUTS if name == layout)


def _named(folder: Path, category: str | None, layout: str) -> tuple[Path, str | None, str]:
    """Final (folder, category, layout): VisA's converted folders get their own name, categories a default."""
    if layout == "mvtec" and folder.parent.name == "visa_pytorch":
        layout = "visa_pytorch"
    if category is None and layout in MVTEC_FAMILY:
        category = folder.name
    return folder, category, layout


def locate(root: Path, category: str | None, accepted: tuple[str, ...]) -> tuple[Path, str | None, str]:
    """(dataset folder, category, layout) for ``root`` and an optional ``category``.

    Raises:
        DatasetError: nothing fits; several categories and none chosen; category not found.
    """
    for folder, cat in _candidates(root, category):
        layout = probe_layout(folder)
        root_is_other = folder == root and category not in (None, root.name) and layout != "visa_csv"
        if layout in accepted and not root_is_other:
            return _named(folder, cat, layout)
    if category is None:
        fits = [d for d in subdirs(root) if probe_layout(d) in accepted]
        if len(fits) == 1:
            return _named(fits[0], fits[0].name, probe_layout(fits[0]) or "")
        if fits:
            raise DatasetError(f"{root} holds several categories ({listed(d.name for d in fits)}); pass category=...")
    elif not any(folder.is_dir() for folder, _ in _candidates(root, category)[:-1]):
        found = [d.name for d in subdirs(root)]
        raise DatasetError(f"Category {category!r} not found in {root}; found: {listed(found) or 'nothing'}")
    expected = ", ".join(accepted)
    found_layout = probe_layout(root)
    extra = f" (it looks like {found_layout})" if found_layout else ""
    raise DatasetError(f"{root}{contents_hint(root)} does not have the expected layout ({expected}){extra}."
                       f"\n{LAYOUT_HELP}")


#: Files looked at when describing a folder that fits no layout (a huge folder is not walked to the end).
_HINT_MAX_FILES = 50_000


def contents_hint(root: Path) -> str:
    """Why a folder fits no layout, in words: it is empty, it holds no images, or no normal images."""
    from itertools import islice

    from iadbe.data.files import IMAGE_EXTENSIONS, is_hidden

    files = [p for p in islice(root.rglob("*"), _HINT_MAX_FILES) if p.is_file() and not is_hidden(p.relative_to(root))]
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        return " is empty (no files at all), so it"
    if not images:
        return (f" holds {len(files)} file(s) but no images ({' '.join(sorted(IMAGE_EXTENSIONS))}), so it")
    labels = [p for p in files if p.suffix.lower() == ".txt"
              and "labels" in {part.lower() for part in p.relative_to(root).parts[:-1]}]
    if labels:
        return (f" holds {len(images)} image(s) and {len(labels)} YOLO label file(s) in labels/ folders, but not "
                "as images/<split> + labels/<split>, <split>/images + <split>/labels or through a data.yaml "
                "naming the splits, so it")
    normal = {name.lower() for name in pools.NORMAL_DIRS}
    if not any(normal & {part.lower() for part in p.relative_to(root).parts[:-1]} for p in images):
        return (f" holds {len(images)} image(s) but no folder of normal images ({', '.join(pools.NORMAL_DIRS)}): "
                "anomaly detectors train on normal images only, so it")
    return ""


def _candidates(root: Path, category: str | None) -> list[tuple[Path, str | None]]:
    """Folders to probe, most specific first; the root itself last."""
    if category is None:
        return [(root, None)]
    return [(root / category, category), (root / "visa_pytorch" / category, category), (root, category)]
