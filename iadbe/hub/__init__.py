"""The Hugging Face Hub side, one module per job:

* :mod:`iadbe.hub.refs`: ``hf://`` references (parsed and built), tokens and redaction, typed errors, the
  huggingface_hub boundary where every error of that library becomes ours;
* :mod:`iadbe.hub.download`: verified, cache-first model downloads (offline included);
* :mod:`iadbe.hub.datasets`: dataset downloads;
* :mod:`iadbe.hub.push`: one-commit pushes with model card and manifest entry.

Lazy: ``import iadbe.hub`` imports nothing heavy; ``from iadbe.hub import download_model`` loads its module.
"""

from __future__ import annotations

from iadbe.lazy import lazy_getattr

_LAZY = {
    **dict.fromkeys(("HubError", "HubUnreachableError", "ChecksumMismatchError", "ModelNotCachedError", "HubRef",
                     "hub_uri", "parse_hub_ref", "check_repo_id", "redact", "resolve_token", "MODEL_FILES",
                     "PUSH_FILES", "PICKLE_SUFFIXES", "DATASET_PATTERNS", "PROBE_TIMEOUT_S"), "iadbe.hub.refs"),
    **dict.fromkeys(("download_model", "download_file", "is_cached"), "iadbe.hub.download"),
    "download_dataset": "iadbe.hub.datasets",
    **dict.fromkeys(("PushResult", "push_model", "default_entry_id"), "iadbe.hub.push"),
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
