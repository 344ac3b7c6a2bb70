"""The catalogue the app and ``iadbe models`` show: manifest models merged with the local store."""

from __future__ import annotations

import functools
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iadbe import constants


@dataclass(frozen=True)
class CatalogEntry:
    """One model the user can pick."""

    id: str
    display_name: str
    source: str  # "manifest", "local" (the server's store) or "workspace" (the visitor's own, shared mode)
    model: str
    backbone: str | None
    dataset: str | None
    category: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    location: str = ""  # model directory, or hf://repo/path@rev
    cached: bool = True

    def label(self) -> str:
        auroc = self.metrics.get("image_AUROC")
        score = f", image AUROC {100 * auroc:.1f}" if isinstance(auroc, (int, float)) else ""
        where = {"local": "local", "workspace": "yours"}.get(self.source) or (
            "Hub, cached" if self.cached else "Hub, not cached")
        parts = [p for p in (self.dataset, self.category, self.backbone) if p]
        return f"{self.display_name} [{' / '.join(parts)}{score}] ({where})"


def manifest_entries(path: Path | None = None) -> list[Any]:
    """Entries of the manifest (``IADBE_MANIFEST`` or the shipped one); [] when there is none.

    Parsed once per version of the file (path, size, mtime): the app resolves a model name on every
    /predict, and parsing + validating the YAML each time cost 3 ms of a 16 ms prediction.
    """
    manifest_path = Path(path or constants.MANIFEST_PATH)
    try:
        status = manifest_path.stat()
    except OSError:
        return []
    if not stat.S_ISREG(status.st_mode):
        return []
    return list(_parsed_manifest(str(manifest_path.resolve()), status.st_size, status.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _parsed_manifest(path: str, size: int, mtime_ns: int) -> tuple[Any, ...]:
    from iadbe.manifest import load_manifest
    from iadbe.models import all_specs

    # an entry naming a detector this build does not have is an error in the manifest, not a model to list
    return tuple(load_manifest(path, known_models=[spec.name for spec in all_specs()]).models)  # frozen entries


def find_manifest_entry(model_id: str, path: Path | None = None) -> Any | None:
    for entry in manifest_entries(path):
        if entry.id == model_id:
            return entry
    return None


def build_catalog(manifest_path: Path | None = None, store: Path | None = None,
                  workspace: Path | None = None) -> list[CatalogEntry]:
    """Manifest models (marked cached or not, without touching the network) plus local models.

    ``workspace``: a visitor's own model store (``iadbe.workspaces``), listed before the server's store with source
    ``workspace``, so that an id the visitor also sees among the server's models means their own.
    """
    from iadbe import hub
    from iadbe.store import list_store

    entries: list[CatalogEntry] = []
    for item in manifest_entries(manifest_path):
        entries.append(CatalogEntry(
            id=item.id, display_name=item.display_name, source="manifest", model=item.model,
            backbone=item.backbone, dataset=item.dataset, category=item.category, metrics=dict(item.metrics or {}),
            location=hub.hub_uri(item.repo_id, item.path_in_repo, item.revision),
            cached=hub.is_cached(item),
        ))
    stores = [(workspace, "workspace")] if workspace is not None else []
    for folder, source in [*stores, (store, "local")]:
        for stored in list_store(folder):
            meta = stored.meta
            dataset = meta.get("dataset") or {}
            entries.append(CatalogEntry(
                id=stored.path.name, display_name=str(meta.get("display_name") or meta.get("model")), source=source,
                model=str(meta.get("model")), backbone=meta.get("backbone"), dataset=dataset.get("name"),
                category=dataset.get("category"), metrics=dict(meta.get("metrics") or {}), location=str(stored.path),
            ))
    return entries
