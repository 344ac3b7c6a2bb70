"""Dataset downloads from the Hub (``hf://datasets/OWNER/NAME[/PATH]@REVISION``): images, masks and
label files only, into the standard HF cache."""

from __future__ import annotations

from pathlib import Path

from iadbe.errors import DatasetError
from iadbe.hub.download import cached_commit, fetch_snapshot, file_pattern
from iadbe.hub.refs import DATASET_PATTERNS, PROBE_TIMEOUT_S, HubRef, cache_root, parse_hub_ref, resolve_token


def download_dataset(
    ref: HubRef | str,
    *,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    timeout: float | None = None,
) -> Path:
    """Download a dataset repo (``hf://datasets/OWNER/NAME[/PATH][@REVISION]``) into the HF cache.

    ``token``: a token, ``None`` for ``HF_TOKEN`` / the stored login, ``False`` for none at all (a public
    app downloading for a visitor must not read with the server's own token).

    Only images, masks, label/split text files and small metadata are fetched (:data:`DATASET_PATTERNS`).

    Returns:
        The local folder (the snapshot, or its ``PATH`` sub-folder), e.g. ``good/``, ``defect/``, ``masks/``.

    Raises:
        DatasetError: not a dataset reference, nothing downloaded, or offline and not cached.
        HubError: the Hub refused (token, repo not found or private, ...).
    """
    from huggingface_hub import snapshot_download

    hub_ref = ref if isinstance(ref, HubRef) else parse_hub_ref(ref)
    if hub_ref.repo_type != "dataset":
        raise DatasetError(f"{hub_ref.uri} is not a dataset: use hf://datasets/OWNER/NAME[@REVISION]")
    cache = cache_root(cache_dir)
    tok = None if token is False else resolve_token(token or None)
    prefix = f"{hub_ref.path_in_repo}/" if hub_ref.path_in_repo else ""
    patterns = [file_pattern(prefix) + p for p in DATASET_PATTERNS]

    def find_cached() -> Path | None:
        commit = cached_commit(hub_ref, cache)
        if commit is None:
            return None
        try:
            return Path(snapshot_download(hub_ref.repo_id, repo_type="dataset", revision=commit,
                                          cache_dir=str(cache), allow_patterns=patterns, local_files_only=True))
        except Exception:  # noqa: BLE001 - not (completely) cached
            return None

    def not_cached(reason: str) -> Exception:
        return DatasetError(
            f"Dataset {hub_ref.uri} is not in the local Hugging Face cache ({cache}) and cannot be downloaded now: "
            f"{reason}. Connect to the network once to download it."
        )

    snapshot = fetch_snapshot(hub_ref, patterns, token=tok, cache=cache,
                      timeout=PROBE_TIMEOUT_S if timeout is None else timeout,
                      find_cached=find_cached, not_cached=not_cached)
    folder = snapshot / hub_ref.path_in_repo if hub_ref.path_in_repo else snapshot
    if not folder.is_dir() or not any(p.is_file() for p in folder.rglob("*")):
        raise DatasetError(f"{hub_ref.uri}: no image or metadata files at this path and revision")
    return folder
