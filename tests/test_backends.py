"""Backend choice: what ``load_model(..., backend="auto")`` asks of the machine on every call."""

from __future__ import annotations

import torch

from iadbe.inference import backends


def test_cuda_is_asked_once_per_process(monkeypatch):
    """torch does not cache a CUDA device count of 0 and asks NVML again on each ``is_available`` (about
    3 ms here, on every app prediction); IADBE asks once."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: calls.append(1) or False)
    backends.cuda_available.cache_clear()
    try:
        assert [backends.cuda_available() for _ in range(3)] == [False] * 3
        assert len(calls) == 1
    finally:
        backends.cuda_available.cache_clear()
