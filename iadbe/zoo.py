"""Build a real model zoo: train each model on each category, push it, record it in the manifest.

``iadbe zoo --dataset mvtec --root R --models padim,patchcore --repo-id ORG/NAME`` is the one command a
maintainer runs (with a Hub token) to fill ``models_manifest.yaml`` with models that really exist:
every entry it writes is pinned to the commit the push created, with the sha256 of each file.

Resumable at two points, so an interrupted run (crash, Ctrl-C, lost connection) loses little:

* a (model, category) whose manifest entry already points at ``repo_id`` is skipped;
* a model trained earlier whose push did not happen is pushed from ``work_dir`` without training again.

The training jobs go to an executor (:mod:`iadbe.benchmark.executors`): here, one after the other, or a Ray
cluster (``--executor ray``), whose workers send each trained model back; the pushes and the manifest happen
here, one model at a time, as each job comes back.

The manifest is updated atomically after each successful push (``hub.push_model``), never before.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from iadbe import constants
from iadbe.errors import IADBEError, SettingsError, StoreError

if TYPE_CHECKING:
    from iadbe.benchmark.executors import Executor
    from iadbe.benchmark.jobs import Outcome, Progress

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
    executor: Executor | None = None,
) -> list[ZooItem]:
    """Train, push and register every (model, category); see the module docstring for resuming.

    Args:
        categories: categories to build (default: every category found under ``root``).
        manifest_path: the manifest to update (default: the shipped ``models_manifest.yaml``).
        work_dir: where trained model directories wait for their push (default ``IADBE_HOME/zoo``).
        token: Hub write token (default ``HF_TOKEN`` or the stored login); checked before any training.
        executor: where the models train (:func:`iadbe.benchmark.executors.make_executor`; default: here,
            one after the other). On a Ray cluster each worker trains in its own folder and sends the model
            back; this process writes it to ``work_dir`` and pushes it.
    Returns:
        One :class:`ZooItem` per (model, category), in order; failures are recorded, the rest continue.
    Raises:
        HubError: no token at all (nothing is trained then).
        SettingsError / DatasetError: unknown model, no category found.
    """
    from iadbe.benchmark.executors import LocalExecutor
    from iadbe.benchmark.jobs import Job, Progress
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

    done = {e.id: e for e in load_manifest(manifest_path).models} if manifest_path.is_file() else {}
    executor = executor or LocalExecutor()
    items: dict[str, ZooItem] = {}
    order, jobs, ready = [], [], []
    for spec in specs:
        for category in chosen:
            key = f"{spec.name}/{category}"
            order.append(key)
            entry_id = default_entry_id(repo_id, zoo_path_in_repo(spec.name, category))
            if entry_id in done and done[entry_id].repo_id == repo_id:
                items[key] = ZooItem(spec.name, category, "skipped", entry_id, "already in the manifest")
                report(f"{key}: already published ({entry_id}), skipped")
            elif _complete(_waiting_dir(work_dir, spec.name, category), key, report):
                ready.append((spec, category))
            else:
                in_place = executor.name == "local"  # a cluster's worker trains in its own folder, sent back
                jobs.append(Job(key, f"{__name__}:train_job", {
                    "model": spec.name, "dataset": dataset, "root": str(root), "category": category,
                    "backbone": backbone, "image_size": image_size, "max_epochs": max_epochs,
                    "max_train_images": max_train_images, "seed": seed,
                    "model_dir": str(_waiting_dir(work_dir, spec.name, category)) if in_place else None},
                    model=spec.name, fresh_worker=True))

    def publish(spec: Any, category: str, trained_now: bool, error: str | None = None) -> bool:
        path_in_repo = zoo_path_in_repo(spec.name, category)
        entry_id, key = default_entry_id(repo_id, path_in_repo), f"{spec.name}/{category}"
        if error is None:
            try:
                result = _push(_waiting_dir(work_dir, spec.name, category), repo_id, path_in_repo, entry_id,
                               manifest_path, token, private, spec, category, dataset)
            except IADBEError as err:
                error = str(err)
        if error is not None:
            items[key] = ZooItem(spec.name, category, "failed", entry_id, error)
            report(f"{key}: FAILED: {error}")
            return False
        how = "trained and pushed" if trained_now else "pushed (trained earlier)"
        items[key] = ZooItem(spec.name, category, "pushed", entry_id, f"{how} at {result.revision}")
        report(f"{key}: {how} -> {result.hf_ref}")
        return True

    for spec, category in ready:
        publish(spec, category, trained_now=False)

    def handle(outcome: Outcome) -> bool:
        model, _, category = outcome.job.key.partition("/")
        error = outcome.error
        if error is None and outcome.result and "files" in outcome.result:
            try:
                _write_model_dir(_waiting_dir(work_dir, model, category), outcome.result["files"])
            except OSError as err:  # StoreError included: a path outside the folder
                error = f"the model sent back could not be written: {err}"
        return publish(get_spec(model), category, trained_now=True, error=error)

    def on_event(progress: Progress, event: str) -> None:
        report(event.replace(": started", ": training") if ": started" in event else progress.line())

    executor.run(jobs, handle, Progress(total=len(order), skipped=len(order) - len(jobs), executor=executor.name),
                 on_event)
    return [items[key] for key in order]


def train_job(model: str, dataset: str, root: str, category: str, backbone: str | None, image_size: int,
              max_epochs: int | None, max_train_images: int | None, seed: int,
              model_dir: str | None) -> dict[str, Any]:
    """One zoo job wherever it runs: train into ``model_dir`` (the driver's work folder: the local executor),
    or into a temporary folder whose files are returned (``{"files": {relative path: bytes}}``: a cluster)."""
    from iadbe.training import train

    def train_into(out: Path) -> None:
        train(model, dataset, root, category=category, backbone=backbone, image_size=image_size,
              max_epochs=max_epochs, max_train_images=max_train_images, seed=seed, out=out, overwrite=True)

    if model_dir is not None:
        train_into(Path(model_dir))
        return {"model_dir": model_dir}
    with tempfile.TemporaryDirectory(prefix="iadbe-zoo-") as tmp:
        out = Path(tmp) / "model"
        train_into(out)
        return {"files": {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}}


def _waiting_dir(work_dir: Path, model: str, category: str) -> Path:
    """Where a trained (model, category) waits for its push."""
    return work_dir / f"{model}__{category}"


def _write_model_dir(model_dir: Path, files: dict[str, bytes]) -> None:
    """A model directory sent back by a worker, written next to ``model_dir`` and then moved in place."""
    staging = model_dir.with_name(f".{model_dir.name}.incoming")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for relative, data in files.items():
            target = staging / relative
            if not target.resolve().is_relative_to(staging.resolve()):
                raise StoreError(f"a worker sent a file outside the model folder: {relative}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(model_dir, ignore_errors=True)
    staging.rename(model_dir)


def _complete(model_dir: Path, key: str, report: ZooProgress) -> bool:
    """Whether a complete model (trained earlier, not pushed) waits in ``model_dir``."""
    from iadbe.store import read_config, verify_files

    if not (model_dir / "iadbe.json").is_file():
        return False
    try:
        verify_files(model_dir, read_config(model_dir))  # iadbe.json valid, files match their sha256
        return True
    except IADBEError as err:
        report(f"{key}: the model waiting in {model_dir} is unusable ({err}); training again")
        return False


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
