"""One benchmark run: what it is (:class:`RunSpec`) and what it recorded (a JSON file per run).

Records live in ``<out>/runs/<run_id>.json`` and are written atomically, so a benchmark killed at
any moment leaves only complete records; :func:`finished_ids` is what resuming skips.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODES = ("per_category", "one_to_all", "unified", "kfold")
RECORD_SCHEMA = 1


@dataclass(frozen=True)
class RunSpec:
    """A (model, dataset, category, seed) combination and the settings it trains with.

    ``mode``: ``per_category`` (train and test on ``category``), ``one_to_all`` (train on ``category``,
    test on every category of ``test_categories``, as in the study's unified table) or ``unified``
    (one model trained on all ``test_categories`` together, tested on each) or ``kfold`` (fold ``fold`` of
    ``folds`` over the category's labelled images, :mod:`iadbe.benchmark.kfold`).
    """

    model: str
    dataset: str
    root: str
    category: str
    seed: int = 0
    backbone: str | None = None
    image_size: int = 256
    max_epochs: int | None = None
    max_train_images: int | None = None
    max_train_minutes: float | None = None
    mode: str = "per_category"
    test_categories: tuple[str, ...] = ()
    timing_images: int = 8
    overrides: dict[str, Any] = field(default_factory=dict)
    fold: int = 0
    folds: int = 0

    @property
    def run_id(self) -> str:
        from iadbe.store import safe_name

        prefix = "" if self.mode == "per_category" else f"{self.mode}__"
        fold = f"__fold{self.fold + 1}of{self.folds}" if self.mode == "kfold" else ""
        return safe_name(f"{prefix}{self.model}__{self.category}{fold}__seed{self.seed}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["test_categories"] = list(self.test_categories)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["test_categories"] = tuple(known.get("test_categories", ()))
        return cls(**known)


def split_names(text: Any) -> list[str]:
    """``"padim, patchcore;dfm"`` -> ``["padim", "patchcore", "dfm"]`` (commas or semicolons; blanks dropped)."""
    return [part.strip() for part in str(text or "").replace(";", ",").split(",") if part.strip()]


def runs_dir(out: Path) -> Path:
    return Path(out) / "runs"


def record_path(out: Path, spec: RunSpec) -> Path:
    return runs_dir(out) / f"{spec.run_id}.json"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(record, stream, indent=1, sort_keys=True, default=_jsonable)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_records(out: Path) -> list[dict[str, Any]]:
    """Every complete record under ``<out>/runs`` (unreadable files are skipped: a record is atomic)."""
    records = []
    for path in sorted(runs_dir(Path(out)).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "status" in record:
            records.append(record)
    return records


def finished_ids(out: Path) -> set[str]:
    """Run ids whose record says ``ok``: resuming skips them (failed runs are tried again)."""
    return {r["run_id"] for r in load_records(out) if r.get("status") == "ok"}
