"""Publishing a model directory to the Hub in one commit, with its model card and manifest entry."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iadbe.errors import ModelFormatError
from iadbe.hub.refs import (
    COMMIT_RE,
    PICKLE_SUFFIXES,
    PUSH_FILES,
    ChecksumMismatchError,
    HubError,
    HubRef,
    call_hub,
    check_repo_id,
    clean_path,
    endpoint,
    hub_api,
    resolve_token,
)
from iadbe.manifest import REQUIRED_FILES, ManifestEntry
from iadbe.store import sha256_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_model` published: one commit holding every file."""

    repo_id: str
    revision: str
    path_in_repo: str
    files: dict[str, str]  # path relative to the model directory -> sha256
    url: str
    manifest_entry: ManifestEntry | None = field(default=None, compare=False)

    @property
    def hf_ref(self) -> str:
        """``hf://OWNER/NAME[/PATH]@COMMIT``: load it with ``iadbe.load_model``."""
        return HubRef(self.repo_id, self.path_in_repo, self.revision).uri


def default_entry_id(repo_id: str, path_in_repo: str = "") -> str:
    """Manifest id of a pushed model: ``owner-name[-path]`` as a slug."""
    raw = f"{repo_id}/{path_in_repo}".lower()
    return re.sub(r"[^a-z0-9]+", "-", raw).strip("-")


def _read_meta(model_dir: Path) -> dict[str, Any]:
    try:
        meta = json.loads((model_dir / "iadbe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFormatError(f"{model_dir / 'iadbe.json'} is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{model_dir / 'iadbe.json'} must hold a JSON object")
    return meta


def _entry_from_meta(meta: dict[str, Any], repo_id: str, path_in_repo: str, revision: str,
                     files: dict[str, str], entry_id: str | None, display_name: str | None,
                     description: str | None) -> ManifestEntry:
    from pydantic import ValidationError

    from iadbe.model_card import finite_metrics, model_license

    dataset = meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {"name": meta.get("dataset")}
    category = dataset.get("category") or dataset.get("name")
    data = {
        "id": entry_id or default_entry_id(repo_id, path_in_repo),
        "display_name": display_name or meta.get("name") or f"{meta.get('model')} {category}",
        "model": meta.get("model"),
        "backbone": meta.get("backbone"),
        "dataset": dataset.get("name"),
        "category": category,
        "repo_id": repo_id,
        "path_in_repo": path_in_repo,
        "revision": revision,
        "files": files,
        "image_size": meta.get("image_size"),
        "metrics": finite_metrics(meta),
        "license": model_license(meta),
        "description": description,
    }
    try:
        return ManifestEntry.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ModelFormatError(f"cannot describe this model in the manifest ({problems}); check iadbe.json") from None


def push_model(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    path_in_repo: str = "",
    token: str | None = None,
    manifest_path: str | Path | None = None,
    commit_message: str | None = None,
    entry_id: str | None = None,
    display_name: str | None = None,
    description: str | None = None,
    known_models: Iterable[str] | None = None,
) -> PushResult:
    """Publish a model directory to the Hub in ONE commit, then (optionally) record it in the manifest.

    The commit holds ``iadbe.json``, ``weights.safetensors``, ``openvino/model.{xml,bin}`` (when present) and a
    generated model card ``README.md``, under ``path_in_repo``. Pickled checkpoints are never uploaded. The
    manifest entry (pinned to the new commit, with the sha256 of each file) is written only after the commit
    succeeded, atomically: an interrupted push leaves the manifest as it was.

    Args:
        model_dir: the local model directory (docs/ARCHITECTURE.md).
        repo_id: ``OWNER/NAME``; created when missing (``private`` applies only then).
        path_in_repo: folder in the repo ("" = repo root), e.g. ``padim/bottle``.
        token: write token; default ``HF_TOKEN`` or the stored login.
        manifest_path: manifest to upsert the entry into (id ``entry_id`` or :func:`default_entry_id`).
        known_models: registry names the entry's ``model`` must be in (``None``: not checked).

    Raises:
        ModelFormatError: not a model directory (``iadbe.json`` / ``weights.safetensors`` missing, checksum of a
            local file differs from ``iadbe.json``, metadata incomplete for the manifest).
        HubError: no token, token refused, repo owned by someone else, Hub unreachable...
        ManifestError: the existing manifest is invalid (checked before pushing).
    """
    from huggingface_hub import CommitOperationAdd

    from iadbe.manifest import load_manifest, upsert_entry
    from iadbe.model_card import build_model_card

    model_dir = Path(model_dir)
    repo_id = check_repo_id(repo_id)
    path_in_repo = clean_path(path_in_repo)
    ref = HubRef(repo_id, path_in_repo)
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelFormatError(f"{model_dir} is not a model directory: {', '.join(missing)} missing; train or "
                               "export a model first (layout in docs/ARCHITECTURE.md)")
    openvino = [(model_dir / n).is_file() for n in ("openvino/model.xml", "openvino/model.bin")]
    if any(openvino) and not all(openvino):
        raise ModelFormatError(f"{model_dir}: openvino/model.xml and openvino/model.bin must both exist; re-export")
    meta = _read_meta(model_dir)
    names = [name for name in PUSH_FILES if (model_dir / name).is_file()]
    skipped = sorted(p.name for p in model_dir.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if skipped:
        logger.info("Not uploading pickled files %s (IADBE publishes safetensors and OpenVINO only)", skipped)

    files = {name: sha256_file(model_dir / name) for name in names}
    listed = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    for name, expected in listed.items():
        if name in files and files[name] != str(expected).lower():
            raise ChecksumMismatchError(name, str(expected), files[name], source=str(model_dir))
    card = str(build_model_card(meta, repo_id=repo_id, path_in_repo=path_in_repo)).encode("utf-8")
    files["README.md"] = hashlib.sha256(card).hexdigest()

    draft = None
    if manifest_path is not None:  # fail before pushing when the entry or the manifest would be invalid
        draft = _entry_from_meta(meta, repo_id, path_in_repo, "0" * 40, files, entry_id, display_name, description)
        if Path(manifest_path).exists():
            load_manifest(manifest_path, known_models=known_models)
        if known_models is not None and draft.model.lower() not in {m.lower() for m in known_models}:
            raise ModelFormatError(f"model {draft.model!r} of {model_dir} is not a registered detector")

    tok = resolve_token(token)
    if not tok:
        raise HubError("pushing needs a token with write access: set HF_TOKEN or log in with `hf auth login`",
                       status=401)
    api = hub_api(tok)
    call_hub(lambda: api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"), "create repo", ref, tok)
    prefix = f"{path_in_repo}/" if path_in_repo else ""
    operations = [CommitOperationAdd(path_in_repo=prefix + name, path_or_fileobj=str(model_dir / name))
                  for name in names]
    operations.append(CommitOperationAdd(path_in_repo=prefix + "README.md", path_or_fileobj=card))
    message = commit_message or f"Upload {meta.get('name') or meta.get('model', 'model')} with iadbe"
    info = call_hub(lambda: api.create_commit(repo_id, operations, commit_message=message, repo_type="model"),
                 "push to", ref, tok)
    revision = str(info.oid)
    if not COMMIT_RE.fullmatch(revision):
        raise HubError(f"push to {ref.uri}: the Hub answered no commit hash ({revision!r}); check HF_ENDPOINT")
    logger.info("Pushed %d files to %s@%s", len(files), repo_id, revision)

    entry = None
    if draft is not None and manifest_path is not None:
        entry = ManifestEntry.model_validate({**draft.model_dump(), "revision": revision})
        upsert_entry(manifest_path, entry, known_models=known_models)
    url = f"{endpoint()}/{repo_id}/tree/{revision}" + (f"/{path_in_repo}" if path_in_repo else "")
    return PushResult(repo_id, revision, path_in_repo, files, url, entry)
