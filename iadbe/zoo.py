"""Build a real model zoo: train each model on each category, push it, record it in the manifest.

``iadbe zoo --dataset mvtec --root R --models padim,patchcore --repo-id ORG/NAME`` is the one command a
maintainer runs (with a Hub token) to fill ``models_manifest.yaml`` with models that really exist:
every entry it writes is pinned to the commit the push created, with the sha256 of each file.

Resumable at two points, so an interrupted run (crash, Ctrl-C, lost connection) loses little:

* a (model, category) whose manifest entry already points at ``repo_id`` is skipped;
* a model trained earlier whose push did not happen is pushed from ``work_dir`` without training again.

The manifest is updated atomically after each successful push (``hub.push_model``), never before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from iadbe import constants
from iadbe.errors import IADBEError, SettingsError

logger = logging.getLogger(__name__)

ZooProgress = Callable[[str], None]


@dataclass(frozen=True)
class ZooItem:
    """What happened to one (model, category) of a zoo run."""

    model: str
    category: str
    status: str  # "pushed" | "skipped" | "failed"
    entry_id: str
    message: str = ""


def zoo_path_in_repo(model: str, category: str) -> str:
    """Folder of one model in the zoo repository: ``<model>/<category>``."""
    from iadbe.store import safe_name

    return f"{safe_name(model)}/{safe_name(category)}"


def build_zoo(
    *,
    dataset: str,
    root: str | Path,
    models: Sequence[str],
    repo_id: str,
    categories: Sequence[str] | None = None,
    backbone: str | None = None,
    image_size: int = 256,
    max_epochs: int | None = None,
    max_train_images: int | None = None,
    seed: int = 0,
    manifest_path: str | Path | None = None,
    work_dir: str | Path | None = None,
    token: str | None = None,
    private: bool = False,
    progress: ZooProgress | None = None,
) -> list[ZooItem]:
    """Train, push and register every (model, category); see the module docstring for resuming.

    Args:
        categories: categories to build (default: every category found under ``root``).
        manifest_path: the manifest to update (default: the shipped ``models_manifest.yaml``).
        work_dir: where trained model directories wait for their push (default ``IADBE_HOME/zoo``).
        token: Hub write token (default ``HF_TOKEN`` or the stored login); checked before any training.
    Returns:
        One :class:`ZooItem` per (model, category), in order; failures are recorded, the rest continue.
    Raises:
        HubError: no token at all (nothing is trained then).
        SettingsError / DatasetError: unknown model, no category found.
    """
    from iadbe.data import list_categories
    from iadbe.hub import HubError, check_repo_id, default_entry_id, resolve_token
    from iadbe.manifest import load_manifest
    from iadbe.models import get_spec

    report = progress or (lambda message: logger.info("%s", message))
    repo_id = check_repo_id(repo_id)
    specs = [get_spec(name) for name in models]
    if not specs:
        raise SettingsError("name at least one model (--models padim,patchcore,...)")
    if resolve_token(token) is None:
        raise HubError("pushing the zoo needs a Hub write token: set HF_TOKEN or run `huggingface-cli login`")
    manifest_path = Path(manifest_path) if manifest_path else constants.MANIFEST_PATH
    work_dir = Path(work_dir) if work_dir else constants.IADBE_HOME / "zoo"
    chosen = list(categories) if categories else list_categories(dataset, root)

    items: list[ZooItem] = []
    for spec in specs:
        for category in chosen:
            path_in_repo = zoo_path_in_repo(spec.name, category)
            entry_id = default_entry_id(repo_id, path_in_repo)
            done = {e.id: e for e in load_manifest(manifest_path).models} if manifest_path.is_file() else {}
            if entry_id in done and done[entry_id].repo_id == repo_id:
                items.append(ZooItem(spec.name, category, "skipped", entry_id, "already in the manifest"))
                report(f"{spec.name}/{category}: already published ({entry_id}), skipped")
                continue
            model_dir = work_dir / f"{spec.name}__{category}"
            try:
                trained_now = _ensure_trained(model_dir, spec.name, dataset, root, category, backbone, image_size,
                                              max_epochs, max_train_images, seed, report)
                result = _push(model_dir, repo_id, path_in_repo, entry_id, manifest_path, token, private, spec,
                               category, dataset)
            except IADBEError as err:
                items.append(ZooItem(spec.name, category, "failed", entry_id, str(err)))
                report(f"{spec.name}/{category}: FAILED: {err}")
                continue
            how = "trained and pushed" if trained_now else "pushed (trained earlier)"
            items.append(ZooItem(spec.name, category, "pushed", entry_id, f"{how} at {result.revision}"))
            report(f"{spec.name}/{category}: {how} -> {result.hf_ref}")
    return items


def _ensure_trained(model_dir: Path, model: str, dataset: str, root: str | Path, category: str,
                    backbone: str | None, image_size: int, max_epochs: int | None, max_train_images: int | None,
                    seed: int, report: ZooProgress) -> bool:
    """Train into ``model_dir`` unless a complete model is already there; True when it trained now."""
    from iadbe.store import read_config, verify_files
    from iadbe.training import train

    if (model_dir / "iadbe.json").is_file():
        try:
            verify_files(model_dir, read_config(model_dir))  # iadbe.json valid, files match their sha256
            return False
        except IADBEError as err:
            report(f"{model}/{category}: the model waiting in {model_dir} is unusable ({err}); training again")
    report(f"{model}/{category}: training")
    train(model, dataset, root, category=category, backbone=backbone, image_size=image_size, max_epochs=max_epochs,
          max_train_images=max_train_images, seed=seed, out=model_dir, overwrite=True)
    return True


def _push(model_dir: Path, repo_id: str, path_in_repo: str, entry_id: str, manifest_path: Path, token: str | None,
          private: bool, spec: object, category: str, dataset: str) -> object:
    from iadbe.hub import push_model
    from iadbe.models import all_specs

    display = f"{spec.display_name}, {dataset} {category}"  # type: ignore[attr-defined]
    return push_model(model_dir, repo_id, private=private, path_in_repo=path_in_repo, token=token,
                      manifest_path=manifest_path, entry_id=entry_id, display_name=display,
                      known_models=[s.name for s in all_specs()],
                      commit_message=f"IADBE zoo: {path_in_repo}")


def format_zoo_report(items: Sequence[ZooItem]) -> str:
    """A plain table of a zoo run, one line per (model, category), and the totals."""
    lines = [f"{'model':<22} {'category':<16} {'status':<8} entry / message"]
    for item in items:
        lines.append(f"{item.model:<22} {item.category:<16} {item.status:<8} {item.entry_id}  {item.message}")
    counts = {status: sum(i.status == status for i in items) for status in ("pushed", "skipped", "failed")}
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)
