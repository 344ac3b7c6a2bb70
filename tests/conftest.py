"""Shared pytest fixtures.

Hub fixtures
------------
``hub_server`` (session): a Hub-compatible server on 127.0.0.1 (``tests/hub_server.py``) with two users:
``HUB_USER`` (token ``HUB_TOKEN``, may also write to the org ``HUB_ORG``) and ``OTHER_USER`` (``OTHER_TOKEN``);
import those names from ``hub_server``.

``hub_env`` (function): points the real, unmodified ``huggingface_hub`` client at that server, with a fresh
HF cache and home, logged in as ``HUB_USER`` through ``HF_TOKEN``. Use ``hub_env.repo_id("name")`` for a repo
name no other test uses, ``hub_env.anonymous()`` to drop the token, ``hub_env.point_to(url)`` to switch the
endpoint (e.g. to ``hub_server.refused_endpoint()``), ``hub_env.subprocess_env()`` for child processes.

How the endpoint is redirected (checked with huggingface_hub 2.4): its ``constants`` module reads
``HF_ENDPOINT`` and friends once, at import. pytest (or another test) has usually imported it before this
fixture runs, and the server's port is only known once it runs, so setting the environment is not enough
in this process. ``hub_env`` therefore sets both:

* the environment (``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HOME``, ``HF_TOKEN``, ...) for child processes, and
* ``huggingface_hub.constants.ENDPOINT`` **and** ``HUGGINGFACE_CO_URL_TEMPLATE`` (plus the cache/token paths)
  for this process. Patching ``ENDPOINT`` alone is a trap: ``hf_hub_url`` builds file URLs from the template,
  computed at import, and only swaps the prefix when it equals ``constants.ENDPOINT``; with ``ENDPOINT``
  patched but not the template, ``hf_hub_download(..., endpoint=local)`` sends its HEAD requests to
  ``https://huggingface.co`` (then retries for ~25 s before failing).

Telemetry is disabled (env and constant): otherwise huggingface_hub 2.4's header builder fetches
``{ENDPOINT}/api/agent-harnesses`` once per process (3 s timeout) on its first request.

``HfApi()`` objects read ``constants.ENDPOINT`` when they are created, and the module-level functions
(``huggingface_hub.create_repo`` ...) are bound to an ``HfApi`` created at import: code under test must create
its ``HfApi(endpoint=constants.ENDPOINT)`` at call time, as ``iadbe.hub`` does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:  # tests/ as a package or as a plain folder on sys.path
    from .hub_server import HUB_ORG, HUB_TOKEN, HUB_USER, OTHER_TOKEN, OTHER_USER, FakeHub
except ImportError:
    from hub_server import HUB_ORG, HUB_TOKEN, HUB_USER, OTHER_TOKEN, OTHER_USER, FakeHub

_names = itertools.count()


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """A Hub-compatible server on 127.0.0.1 for the whole session (repos persist across tests)."""
    hub = FakeHub(tmp_path_factory.mktemp("fakehub"), {HUB_TOKEN: HUB_USER, OTHER_TOKEN: OTHER_USER},
                  orgs={HUB_USER: [HUB_ORG]})
    hub.start()
    yield hub
    hub.stop()


@dataclass
class HubEnv:
    server: FakeHub
    endpoint: str
    cache_dir: Path
    hf_home: Path
    token: str = HUB_TOKEN
    user: str = HUB_USER
    monkeypatch: pytest.MonkeyPatch = field(repr=False, default=None)  # type: ignore[assignment]

    def repo_id(self, name: str, owner: str | None = None) -> str:
        """A repo id no other test of this session uses."""
        return f"{owner or self.user}/{name}-{next(_names)}"

    def anonymous(self) -> None:
        """No token at all (neither HF_TOKEN nor a stored login)."""
        self.monkeypatch.delenv("HF_TOKEN", raising=False)

    def point_to(self, endpoint: str) -> None:
        """Send the client to another endpoint (e.g. ``refused_endpoint()`` or ``silent_endpoint()``)."""
        from huggingface_hub import constants as hf_constants

        endpoint = endpoint.rstrip("/")
        self.monkeypatch.setenv("HF_ENDPOINT", endpoint)
        self.monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
        self.monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                                 endpoint + "/{repo_id}/resolve/{revision}/{filename}")

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        """Environment for a child process: the same endpoint, cache, home and token (read at its import)."""
        return {**os.environ, **extra}  # hub_env has already set the HF_* variables in os.environ


@pytest.fixture
def hub_env(hub_server: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEnv]:
    """The real huggingface_hub client aimed at ``hub_server``, fresh cache, logged in as ``HUB_USER``."""
    from huggingface_hub import constants as hf_constants

    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    for name in ("HF_HUB_OFFLINE", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_ETAG_TIMEOUT",
                 "HUGGINGFACE_CO_STAGING"):
        monkeypatch.delenv(name, raising=False)
    env = {"HF_HOME": str(home), "HF_HUB_CACHE": str(cache), "HF_TOKEN": HUB_TOKEN,
           "HF_TOKEN_PATH": str(home / "token"), "HF_XET_CACHE": str(home / "xet"),
           "HF_ASSETS_CACHE": str(home / "assets"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_UPDATE_CHECK": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for attr, value in (("HF_HOME", str(home)), ("HF_HUB_CACHE", str(cache)),
                        ("HF_TOKEN_PATH", str(home / "token")), ("HF_STORED_TOKENS_PATH", str(home / "stored_tokens")),
                        ("HF_XET_CACHE", str(home / "xet")), ("HF_ASSETS_CACHE", str(home / "assets")),
                        ("HF_HUB_OFFLINE", False), ("HF_HUB_DISABLE_TELEMETRY", True)):
        monkeypatch.setattr(hf_constants, attr, value)
    try:
        from iadbe import constants as iadbe_constants

        monkeypatch.setattr(iadbe_constants, "HF_HUB_OFFLINE", False)
    except ImportError:
        pass
    hub_env = HubEnv(hub_server, hub_server.url, cache, home, monkeypatch=monkeypatch)
    hub_env.point_to(hub_server.url)
    hub_server.reset_switches()
    yield hub_env
    hub_server.reset_switches()
