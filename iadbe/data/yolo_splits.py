"""Where the images of each split of a YOLO export are: folder arrangements and ``data.yaml``.

Two folder arrangements exist in the wild:
- Ultralytics (what ``yolo train`` documents and writes): ``images/{train,val,test}`` + ``labels/{train,val,test}``;
- Roboflow: ``{train,valid,test}/images`` + ``{train,valid,test}/labels``.
A ``data.yaml`` (``path``, ``train``, ``val``, ``test``, ``names``) decides instead when it names a ``train``
split. Its entries are folders (read recursively), list files (one image path a line) or lists of both,
relative to ``path``; ``path`` is absolute or relative, and is often written for the author's machine, so
it is tried relative to the yaml's folder and to its parent before the yaml's own folder is used. Like
Ultralytics, a ``../x`` that does not exist is read as ``x`` (Roboflow writes ``../train/images``).
A label file is the image path with its last ``images`` folder replaced by ``labels`` and ``.txt`` as suffix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iadbe.data.files import find_child, is_image, list_images, listed
from iadbe.errors import DatasetError

SPLIT_KEYS = ("train", "val", "test")
#: Folder names of each split (case-insensitive, first match wins).
SPLIT_DIRS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
YAML_NAMES = ("data.yaml", "data.yml")


@dataclass(frozen=True)
class SplitFiles:
    """The images of one split and, in words, where they came from (``images/train + labels/train``)."""

    where: str
    images: list[Path]


@dataclass
class YoloFiles:
    """What :func:`find_splits` found: the arrangement in words, split images by key, class names, notes."""

    arrangement: str
    splits: dict[str, SplitFiles]
    names: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def label_path(image: Path, labels_dirs: dict[Path, str] | None = None, root: Path | None = None) -> Path:
    """The label file of ``image``: its last ``images`` folder becomes ``labels``, the suffix ``.txt``.

    An image under no ``images`` folder has its label next to it; for an image under ``root`` only the
    folders below ``root`` count (a dataset kept in ``~/images/`` is not read from ``~/labels/``).
    ``labels_dirs`` caches the spelling of the ``labels`` folder per parent (``Labels`` is found too).
    """
    parts = image.parts
    first = len(root.parts) if root is not None and image.is_relative_to(root) else 0
    for i in range(len(parts) - 2, first - 1, -1):
        if parts[i].lower() == "images":
            parent = Path(*parts[:i])
            cache = {} if labels_dirs is None else labels_dirs
            if parent not in cache:
                found = find_child(parent, ["labels"])
                cache[parent] = found.name if found else "labels"
            return parent.joinpath(cache[parent], *parts[i + 1:-1], image.stem + ".txt")
    return image.with_suffix(".txt")


def find_yaml(root: Path) -> Path | None:
    """``data.yaml`` (or ``data.yml``) of ``root``; else its only ``*.yaml`` naming a ``train`` split."""
    for name in YAML_NAMES:
        if (root / name).is_file():
            return root / name
    others = [p for p in sorted(root.glob("*.y*ml")) if p.suffix.lower() in (".yaml", ".yml")]
    named = [p for p in others if _names_train(_safe_load(p))]
    return named[0] if len(named) == 1 else None


def _names_train(data: Any) -> bool:
    """True for a loaded YAML mapping whose ``train`` is a path or a list of paths (not some other config)."""
    train = data.get("train") if isinstance(data, dict) else None
    if isinstance(train, list):
        return bool(train) and all(isinstance(t, str) for t in train)
    return isinstance(train, str) and bool(train.strip())


def has_arrangement(root: Path) -> bool:
    """True when ``root`` looks like a YOLO export (cheap: no label file is read)."""
    if _roboflow_dirs(root) or _ultralytics_dirs(root):
        return True
    yaml_path = find_yaml(root)
    return yaml_path is not None and _names_train(_safe_load(yaml_path))


def find_splits(root: Path) -> YoloFiles:
    """The split images of the YOLO export in ``root``.

    Raises:
        DatasetError: ``data.yaml`` names a split that is not there (with what was tried), a list file
            names missing images, or ``root`` is no YOLO export.
    """
    yaml_path = find_yaml(root)
    data = _safe_load(yaml_path) if yaml_path else None
    names = class_names(data)
    if yaml_path is not None and _names_train(data):
        found = _from_yaml(root, yaml_path, data)
    else:
        found = _from_folders(root)
        if yaml_path is not None:
            what = "is not valid YAML" if data is None else "names no train split"
            found.notes.append(f"{yaml_path.name} {what}: the splits are read from the folders")
    found.names = names
    return found


def class_names(data: Any) -> dict[int, str]:
    """Class names of a loaded ``data.yaml`` (``names`` as a list or a mapping); {} when absent."""
    names = data.get("names", {}) if isinstance(data, dict) else {}
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items() if str(k).strip().isdigit()}
    return {}


def _safe_load(path: Path) -> Any:
    """The parsed YAML file, or None when it cannot be read."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


# --- folder arrangements -------------------------------------------------------------------------

def _roboflow_dirs(root: Path) -> dict[str, Path]:
    """{key: <split>/images} for the Roboflow arrangement."""
    out = {}
    for key, names in SPLIT_DIRS.items():
        split = find_child(root, names)
        images = find_child(split, ["images"]) if split else None
        if images is not None:
            out[key] = images
    return out


def _ultralytics_dirs(root: Path) -> dict[str, Path]:
    """{key: images/<split>} for the Ultralytics arrangement (a flat ``images/`` is the train split).

    Needs a ``labels/`` folder next to ``images/``, so that any folder named ``images`` is not taken.
    """
    images, labels = find_child(root, ["images"]), find_child(root, ["labels"])
    if images is None or labels is None:
        return {}
    out = {key: d for key, names in SPLIT_DIRS.items() if (d := find_child(images, names)) is not None}
    if not out and list_images(images):
        out["train"] = images
    return out


def _from_folders(root: Path) -> YoloFiles:
    """Splits of the Roboflow or the Ultralytics folder arrangement."""
    dirs, arrangement = _roboflow_dirs(root), "Roboflow arrangement ({train,valid,test}/images + .../labels)"
    if not dirs:
        dirs, arrangement = _ultralytics_dirs(root), "Ultralytics arrangement (images/{train,val,test} + labels/...)"
    if not dirs:
        raise DatasetError(f"{root} is not a YOLO export: no train/images, images/train or data.yaml")
    splits = {key: SplitFiles(_where(d, root), list_images(d, recursive=True)) for key, d in dirs.items()}
    return YoloFiles(arrangement=arrangement, splits=splits)


def _where(images_dir: Path, root: Path) -> str:
    """``images/train + labels/train`` for an images folder (paths relative to ``root`` when inside it)."""
    labels_dir = label_path(images_dir / "x.jpg", root=root).parent

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

    return f"{rel(images_dir)} + {rel(labels_dir)}"


# --- data.yaml -----------------------------------------------------------------------------------

def _from_yaml(root: Path, yaml_path: Path, data: dict[str, Any]) -> YoloFiles:
    """Splits named by ``data.yaml``: the first base folder under which every named split exists."""
    entries = {key: _entry_list(data.get(key)) for key in SPLIT_KEYS}
    entries = {key: value for key, value in entries.items() if value}
    bases = _bases(yaml_path.parent, data.get("path"))
    for base, why in bases:
        resolved = {key: [_resolve(base, e) for e in value] for key, value in entries.items()}
        if all(p is not None for value in resolved.values() for p in value):
            break
    else:
        tried = listed(str(b) for b, _ in bases) or str(yaml_path.parent)
        missing = [f"{key}: {e}" for key, value in entries.items() for e in value
                   if all(_resolve(b, e) is None for b, _ in bases)]
        if not missing:  # each exists somewhere, but no one folder holds them all
            missing = [f"{key}: {e}" for key, value in entries.items() for e in value]
        found = listed(p.name for p in sorted(root.iterdir()) if not p.name.startswith(".")) or "nothing"
        raise DatasetError(
            f"{yaml_path}: the split paths {'; '.join(missing)} do not exist (tried relative to {tried}). "
            f"{root} holds: {found}. Fix the paths in {yaml_path.name} (relative to its `path`, or to its "
            "own folder), or remove it so that the images/<split> + labels/<split> folders are read."
        )
    notes = [f"{yaml_path.name}'s path ({data['path']}) does not exist here: {why}"] if why else []
    splits = {}
    for key, paths in resolved.items():
        images, wheres = [], []
        for entry, path in zip(entries[key], paths, strict=True):
            if path.is_dir():
                images += list_images(path, recursive=True)
                wheres.append(_where(path, root))
            else:
                listed_images = _read_list(path, base, yaml_path, key)
                images += listed_images
                wheres.append(f"list file {path.relative_to(root) if path.is_relative_to(root) else path} "
                              f"({len(listed_images)} images)")
        splits[key] = SplitFiles(" and ".join(wheres), images)
    arrangement = f"read through {yaml_path.name} (" + ", ".join(f"{k}: {v.where}" for k, v in splits.items()) + ")"
    return YoloFiles(arrangement=arrangement, splits=splits, notes=notes)


def _entry_list(value: Any) -> list[str]:
    """A split entry as a list of path strings ([] for none)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)]


def _bases(folder: Path, path: Any) -> list[tuple[Path, str]]:
    """Folders the split entries may be relative to, with the note to give when the yaml's ``path`` failed."""
    if path in (None, ""):
        return [(folder, "")]
    given = Path(str(path)).expanduser()
    candidates = [given] if given.is_absolute() else [folder / given, folder.parent / given]
    out: list[tuple[Path, str]] = []
    for candidate in candidates:
        if candidate.is_dir() and candidate.resolve() not in [b.resolve() for b, _ in out]:
            out.append((candidate, ""))
    if folder.resolve() not in [b.resolve() for b, _ in out]:
        out.append((folder, "" if out else f"the splits are read relative to the folder of the yaml, {folder}"))
    return out


def _resolve(base: Path, entry: str) -> Path | None:
    """The existing folder or list file ``entry`` names under ``base``, or None.

    Tried in order: the path as given (absolute, or relative to ``base``), ``../x`` as ``x``, and the
    last two or more components of a path written for another machine (``/content/ds/train/images``).
    """
    given = Path(entry).expanduser()
    candidates = [given if given.is_absolute() else base / given]
    if entry.startswith("../"):
        candidates.append(base / entry[3:])
    parts = [p for p in given.parts if p not in ("/", "..", ".")]
    candidates += [base.joinpath(*parts[i:]) for i in range(len(parts) - 1)]
    return next((c for c in candidates if c.is_dir() or (c.is_file() and not is_image(c))), None)


def _read_list(list_file: Path, base: Path, yaml_path: Path, key: str) -> list[Path]:
    """Images of a list file: ``./x`` relative to the list file's folder, other relative paths to it or to base."""
    images, missing = [], []
    for line in list_file.read_text(encoding="utf-8", errors="replace").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        given = Path(entry)
        if given.is_absolute():
            candidates = [given]
        elif entry.startswith("./"):
            candidates = [list_file.parent / entry[2:]]
        else:
            candidates = [list_file.parent / given, base / given]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(entry)
        else:
            images.append(hit)
    if missing:
        raise DatasetError(f"{yaml_path.name} {key}: the list file {list_file} names {len(missing)} image(s) that "
                           f"do not exist: {listed(missing)}")
    if not images:
        raise DatasetError(f"{yaml_path.name} {key}: the list file {list_file} names no images")
    return images
