"""The manifest of published models (``models_manifest.yaml``): schema, validation, atomic updates.

Example entry::

    models:
      - id: padim-resnet18-mvtec-bottle
        display_name: PaDiM ResNet-18, MVTec AD bottle
        model: padim
        backbone: resnet18
        dataset: mvtec_ad
        category: bottle
        repo_id: iadbe/padim-mvtec
        path_in_repo: bottle            # folder holding the model directory; "" for the repo root
        revision: 0123456789abcdef0123456789abcdef01234567   # full commit hash, never a branch
        files:                          # every file to fetch, with its sha256
          iadbe.json: 9f86d081...
          weights.safetensors: 60303ae2...
        image_size: [256, 256]
        metrics: {image_AUROC: 0.994, pixel_AUROC: 0.982}
        license: cc-by-nc-sa-4.0

:func:`load_manifest` reports every bad entry at once, each with its line in the YAML file.
:func:`upsert_entry` and :func:`save_manifest` write atomically (temporary file + ``os.replace``), so a crash
never leaves half a manifest. Comments inside entries are not kept on save; the comment block at the top of
the file is.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from iadbe.errors import IADBEError

#: Files a model directory must hold (see docs/ARCHITECTURE.md).
REQUIRED_FILES = ("iadbe.json", "weights.safetensors")
#: Suffixes a manifest may list; ``.bin`` only as ``openvino/*.bin``. Never pickles (.ckpt, .pt, .pth, .pkl).
ALLOWED_SUFFIXES = (".json", ".safetensors", ".xml", ".bin", ".md")

_SLUG = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(IADBEError, ValueError):
    """The manifest file is unreadable or has invalid entries; ``problems`` lists each one with its line."""

    def __init__(self, path: str | Path, problems: list[ManifestProblem]):
        self.path = Path(path)
        self.problems = problems
        lines = [f"{self.path}: {len(problems)} problem(s); fix them and reload:"]
        lines += [f"  {p}" for p in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ManifestProblem:
    """One problem of a manifest: where (line, 1-based; entry index and id when known) and what."""

    line: int | None
    message: str
    index: int | None = None
    entry_id: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        if self.index is not None:
            where += f", models[{self.index}]"
        if self.entry_id:
            where += f" ({self.entry_id})"
        return f"{where}: {self.message}"


def _check_relative_path(path: str, what: str) -> str:
    if "\\" in path or path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
        raise ValueError(f"{what} {path!r} must be a relative POSIX path without '.', '..' or empty parts")
    return path


def check_model_file(path: str) -> str:
    """Validate one file path of a model directory: relative, safe, of an allowed kind (never a pickle)."""
    _check_relative_path(path, "file")
    suffix = PurePosixPath(path).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES or (suffix == ".bin" and not path.startswith("openvino/")):
        raise ValueError(
            f"file {path!r} is not allowed: only {', '.join(ALLOWED_SUFFIXES)} (.bin only under openvino/); "
            "pickled checkpoints (.ckpt, .pt, .pth, .pkl) are never downloaded"
        )
    return path


class ManifestEntry(BaseModel):
    """One published model: where it lives on the Hub (pinned to a commit) and what it should contain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="slug: lowercase letters, digits and - _ .")
    display_name: str = Field(min_length=1)
    model: str = Field(min_length=1, description="registry name, e.g. padim")
    backbone: str | None = None
    dataset: str = Field(min_length=1)
    category: str = Field(min_length=1)
    repo_id: str
    repo_type: Literal["model", "dataset"] = "model"
    path_in_repo: str = ""
    revision: str
    files: dict[str, str]
    image_size: tuple[int, int]
    metrics: dict[str, float] = Field(default_factory=dict)
    license: str = Field(min_length=1)
    description: str | None = None

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.fullmatch(value):
            raise ValueError(f"{value!r} must be a slug (lowercase letters, digits, '-', '_' or '.')")
        return value

    @field_validator("repo_id")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _REPO_ID.fullmatch(value) or "--" in value or ".." in value:
            raise ValueError(f"{value!r} must be OWNER/NAME")
        return value

    @field_validator("path_in_repo")
    @classmethod
    def _folder(cls, value: str) -> str:
        value = value.strip("/")
        return _check_relative_path(value, "folder") if value else ""

    @field_validator("revision")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not _COMMIT.fullmatch(value):
            raise ValueError(f"{value!r} must be a full 40-hex commit hash (not a branch or tag)")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for path, digest in value.items():
            try:
                check_model_file(path)
            except ValueError as err:
                problems.append(str(err))
            if not _SHA256.fullmatch(digest):
                problems.append(f"sha256 of {path!r} must be 64 lowercase hex digits, got {digest!r}")
        missing = [f for f in REQUIRED_FILES if f not in value]
        if missing:
            problems.append(f"files must list {', '.join(missing)}")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("image_size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) <= 0:
            raise ValueError(f"{list(value)} must be two positive integers [H, W]")
        return value

    @field_validator("metrics")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"{bad} must be finite numbers")
        return value

    @property
    def hf_ref(self) -> str:
        """``hf://[datasets/]OWNER/NAME[/PATH]@REVISION``: what ``iadbe.load_model`` accepts."""
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        path = f"/{self.path_in_repo}" if self.path_in_repo else ""
        return f"hf://{prefix}{self.repo_id}{path}@{self.revision}"


class Manifest(BaseModel):
    """All entries of a manifest file, ids unique."""

    model_config = ConfigDict(extra="forbid")

    models: list[ManifestEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Manifest:
        seen: set[str] = set()
        for entry in self.models:
            if entry.id in seen:
                raise ValueError(f"duplicate id {entry.id!r}")
            seen.add(entry.id)
        return self

    def get(self, model_id: str) -> ManifestEntry:
        """The entry with this id; ``KeyError`` naming the known ids otherwise."""
        for entry in self.models:
            if entry.id == model_id:
                return entry
        raise KeyError(f"no model {model_id!r} in the manifest; known: {', '.join(self.ids) or 'none'}")

    @property
    def ids(self) -> list[str]:
        return [entry.id for entry in self.models]


# --------------------------------------------------------------------------- loading
def _key_lines(node: yaml.Node) -> dict[str, int]:
    """1-based line of each key of a YAML mapping node."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _format_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def parse_manifest(text: str, path: str | Path = "<manifest>", *, known_models: Iterable[str] | None = None) -> Manifest:
    """Validate manifest YAML text; see :func:`load_manifest`."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ManifestError(path, [ManifestProblem(line, f"not valid YAML: {getattr(err, 'problem', err)}")]) from None
    if data is None:
        return Manifest()
    if not isinstance(data, dict) or not isinstance(data.get("models") or [], list):
        raise ManifestError(path, [ManifestProblem(1, "expected a mapping with a 'models:' list")])
    extra = sorted(set(data) - {"models"})
    problems: list[ManifestProblem] = []
    if extra:
        problems.append(ManifestProblem(1, f"unknown top-level keys {extra} (only 'models:' is allowed)"))

    items = data.get("models") or []
    nodes: list[yaml.Node] = []
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "models" and isinstance(value, yaml.SequenceNode):
                nodes = value.value
    known = {name.lower() for name in known_models} if known_models is not None else None

    entries: list[ManifestEntry] = []
    first_line: dict[str, int | None] = {}
    for index, item in enumerate(items):
        node = nodes[index] if index < len(nodes) else None
        line = node.start_mark.line + 1 if node is not None else None
        keys = _key_lines(node) if node is not None else {}
        entry_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        try:
            entry = ManifestEntry.model_validate(item)
        except ValidationError as err:
            for detail in err.errors():
                field = str(detail["loc"][0]) if detail["loc"] else None
                problems.append(ManifestProblem(keys.get(field, line), _format_error(detail), index, entry_id))
            continue
        if entry.id in first_line:
            problems.append(ManifestProblem(
                keys.get("id", line), f"duplicate id {entry.id!r} (first at line {first_line[entry.id]})",
                index, entry.id,
            ))
            continue
        if known is not None and entry.model.lower() not in known:
            problems.append(ManifestProblem(
                keys.get("model", line), f"model {entry.model!r} is not a registered detector", index, entry.id,
            ))
        first_line[entry.id] = line
        entries.append(entry)
    if problems:
        raise ManifestError(path, problems)
    return Manifest(models=entries)


def load_manifest(path: str | Path, *, known_models: Iterable[str] | None = None) -> Manifest:
    """Read and validate ``models_manifest.yaml``.

    Args:
        path: the YAML file.
        known_models: registry names the ``model`` fields must be in (e.g. ``[s.name for s in all_specs()]``);
            ``None`` skips that check.

    Returns:
        The validated :class:`Manifest`.

    Raises:
        ManifestError: the file is missing or not YAML, or entries are invalid. Every bad entry is reported,
            each with its line number (``err.problems``), not just the first one.

    Example:
        >>> manifest = load_manifest("models_manifest.yaml")
        >>> manifest.get("padim-resnet18-mvtec-bottle").revision
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(path, [ManifestProblem(None, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(path, [ManifestProblem(None, f"cannot read: {err}")]) from None
    return parse_manifest(text, path, known_models=known_models)


# --------------------------------------------------------------------------- saving
def _header_comments(path: Path) -> str:
    """The comment block at the top of an existing manifest (kept on save)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return ""
    header = []
    for line in lines:
        if not line.startswith("#") and line.strip():
            break
        header.append(line)
    return "".join(header)


def dump_manifest(manifest: Manifest) -> str:
    """The YAML text of ``manifest`` (entries in order, keys in schema order, no ``null`` fields)."""
    models = [entry.model_dump(mode="json", exclude_none=True) for entry in manifest.models]
    return yaml.safe_dump({"models": models}, sort_keys=False, allow_unicode=True, width=120)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_manifest(path: str | Path, manifest: Manifest) -> None:
    """Write ``manifest`` to ``path`` atomically (temporary file in the same folder + ``os.replace``)."""
    path = Path(path)
    manifest = Manifest.model_validate(manifest.model_dump())  # re-check unique ids
    _atomic_write(path, _header_comments(path) + dump_manifest(manifest))


def upsert_entry(path: str | Path, entry: ManifestEntry, *, known_models: Iterable[str] | None = None) -> Manifest:
    """Insert ``entry`` or replace the entry with the same id, keep the others, and save atomically.

    The existing file must be valid (a broken manifest is reported, never overwritten). A missing file is
    created. Returns the saved manifest.
    """
    path = Path(path)
    manifest = load_manifest(path, known_models=known_models) if path.exists() else Manifest()
    if known_models is not None and entry.model.lower() not in {m.lower() for m in known_models}:
        raise ManifestError(path, [ManifestProblem(None, f"model {entry.model!r} is not a registered detector",
                                                   entry_id=entry.id)])
    models = list(manifest.models)
    for i, old in enumerate(models):
        if old.id == entry.id:
            models[i] = entry
            break
    else:
        models.append(entry)
    updated = Manifest(models=models)
    save_manifest(path, updated)
    return updated
