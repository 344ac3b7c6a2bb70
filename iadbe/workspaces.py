"""Visitors' workspaces: in a shared (public) app, what a visitor uploads and trains is theirs alone.

A public Space serves everyone from one process and one disk. In shared mode
(``constants.SHARED_MODE``: on when ``SPACE_ID`` is set) each visitor gets a folder under
``constants.WORKSPACES_DIR``:

- ``hf-<username>`` for a visitor signed in with Hugging Face (the profile comes from Gradio's signed
  session cookie, so nobody can claim another account's name), kept until they delete it;
- ``s-<sha256 of the browser session>`` for everyone else, removed when unused for
  ``constants.WORKSPACE_TTL_S`` (checked as visitors come and at every start).

Each holds ``models/`` (a model store of its own) and ``uploads/`` (extracted dataset zips). Only the
owner's own requests resolve to it: the app looks models up in the shared catalogue (manifest + the
server's store) plus the caller's workspace, never by a path the caller types, so another visitor's model
cannot be listed, loaded, pushed or deleted by id or by a guessed path.

In single-user mode (a local ``python app.py``) there is one visitor, ``local``, whose models are the
server's store, as in the CLI.

Quotas (``WORKSPACE_MAX_BYTES``, ``WORKSPACE_MAX_MODELS``) are checked before work starts: an upload is
measured from the zip's directory before anything is unpacked. :class:`TrainingQueue` runs one training at
a time per process and holds at most one per visitor, telling each waiting visitor their place.

Tests: ``tests/test_workspaces.py`` (this module), ``tests/test_app_workspaces.py`` (two visitors through
``gradio_client``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from iadbe import constants
from iadbe.errors import QuotaError, WorkspaceError

ACCOUNT_PREFIX = "hf-"
SESSION_PREFIX = "s-"
LOCAL = "local"
_LAST_USED = ".last-used"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")


@dataclass(frozen=True)
class Visitor:
    """Who is asking: a signed-in account, an anonymous browser session, or the local user."""

    key: str  # folder name: hf-<username>, s-<hash>, or "local"
    kind: str  # "account" | "session" | "local"
    name: str  # for messages: the username, "this browser session" or "local user"

    @property
    def anonymous(self) -> bool:
        return self.kind == "session"


def identify(username: str | None, session: str | None, shared: bool | None = None) -> Visitor:
    """The visitor behind a request.

    Args:
        username: the signed-in Hugging Face username (from ``gr.OAuthProfile``), or None.
        session: Gradio's session hash of the browser tab or API client, or None.
        shared: shared mode (default ``constants.SHARED_MODE``); off: everyone is the local user.

    Raises:
        WorkspaceError: shared mode and neither an account nor a session (nothing to keep the data apart by).
    """
    if not (constants.SHARED_MODE if shared is None else shared):
        return Visitor(LOCAL, "local", "local user")
    if username:
        if not _USERNAME.match(username):
            raise WorkspaceError(f"Unusable account name {username!r}")
        return Visitor(ACCOUNT_PREFIX + username, "account", username)
    if session:
        digest = hashlib.sha256(str(session).encode()).hexdigest()[:32]  # the hash itself is never on disk
        return Visitor(SESSION_PREFIX + digest, "session", "this browser session")
    raise WorkspaceError("This request carries no session: reload the page (or use gradio_client).")


@dataclass(frozen=True)
class Workspace:
    """A visitor's folders. ``root`` is None for the local user (models in the server's store)."""

    visitor: Visitor
    root: Path | None
    models_dir: Path
    uploads_dir: Path | None

    @property
    def private(self) -> bool:
        """True in shared mode: this workspace is the visitor's alone."""
        return self.root is not None

    def touch(self) -> None:
        """Record that the visitor used the workspace now (what expiry measures). A workspace is made by its
        first upload or training, not by a visit: a visitor who only looks leaves nothing on disk."""
        if self.root is None or not self.root.is_dir():
            return
        marker = self.root / _LAST_USED
        marker.touch()
        os.utime(marker)

    # ------------------------------------------------------------------ models
    def model_ids(self) -> list[str]:
        """Ids (folder names) of the visitor's complete models."""
        from iadbe.store import list_store

        return [stored.path.name for stored in list_store(self.models_dir)]

    def model_dir(self, model_id: str) -> Path:
        """The folder of the visitor's model ``model_id``.

        Raises:
            WorkspaceError: no such model in this workspace (also for ids that are paths or contain ``..``).
        """
        text = str(model_id or "").strip()
        if not _MODEL_ID.match(text) or text not in self.model_ids():
            raise WorkspaceError(f"{text!r} is not one of your models ({self._owner()}): "
                                 "use a model id from the model list.")
        return self.models_dir / text

    def delete_model(self, model_id: str) -> Path:
        """Remove one of the visitor's models; returns the removed folder (see :meth:`model_dir` for errors)."""
        path = self.model_dir(model_id)
        shutil.rmtree(path)
        return path

    def clear_uploads(self) -> None:
        """Remove every extracted upload of the visitor."""
        if self.uploads_dir is not None:
            shutil.rmtree(self.uploads_dir, ignore_errors=True)

    def delete_all(self) -> None:
        """Remove the whole workspace (models and uploads). The local user's store is never removed this way."""
        if self.root is None:
            raise WorkspaceError("Single-user mode: models live in the model store; delete them one by one.")
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ quotas
    def usage_bytes(self) -> int:
        """Bytes held by the workspace (0 for the local user: the server's store has no quota)."""
        return folder_bytes(self.root) if self.root is not None else 0

    def check_model_slot(self) -> None:
        """Raises :class:`QuotaError` when the visitor may not add another model (count or disk)."""
        if self.root is None:
            return
        count = len(self.model_ids())
        if count >= constants.WORKSPACE_MAX_MODELS:
            raise QuotaError(f"You have {count} models, the most a visitor may keep here "
                             f"({constants.WORKSPACE_MAX_MODELS}): delete one (Training tab, 'Your models') first.")
        used = self.usage_bytes()
        if used >= constants.WORKSPACE_MAX_BYTES:
            raise QuotaError(f"Your workspace holds {_mb(used)} of its {_mb(constants.WORKSPACE_MAX_BYTES)}: "
                             "delete models or uploaded data (Training tab, 'Your models') first.")

    def check_upload(self, archive: Path) -> None:
        """Refuse a dataset zip that would not fit, before anything is unpacked.

        Its size is what its central directory declares (the extraction itself enforces those sizes and the
        zip-bomb limits). A file that is not a readable zip passes here: the extraction names the problem.

        Raises:
            QuotaError: the unpacked upload would take the workspace over ``WORKSPACE_MAX_BYTES``.
        """
        if self.root is None:
            return
        try:
            with zipfile.ZipFile(archive) as bundle:
                needed = sum(info.file_size for info in bundle.infolist())
        except (OSError, zipfile.BadZipFile, ValueError):
            return
        used = self.usage_bytes()
        if used + needed > constants.WORKSPACE_MAX_BYTES:
            raise QuotaError(f"This dataset unpacks to {_mb(needed)}; your workspace holds {_mb(used)} of its "
                             f"{_mb(constants.WORKSPACE_MAX_BYTES)}. Nothing was unpacked: delete models or "
                             "uploaded data (Training tab, 'Your models'), or upload a smaller dataset.")

    def _owner(self) -> str:
        return "signed in as " + self.visitor.name if self.visitor.kind == "account" else self.visitor.name


def open_workspace(visitor: Visitor) -> Workspace:
    """The visitor's workspace (folders are created when first written; nothing is written here)."""
    if visitor.kind == "local":
        return Workspace(visitor, None, Path(constants.MODEL_STORE), None)
    root = Path(constants.WORKSPACES_DIR) / visitor.key
    return Workspace(visitor, root, root / "models", root / "uploads")


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links are not followed)."""
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for filename in filenames:
            with contextlib.suppress(OSError):
                status = os.lstat(os.path.join(dirpath, filename))
                total += status.st_size
    return total


def last_used(root: Path) -> float:
    """When a workspace was last used (its marker's mtime, else the folder's)."""
    for path in (root / _LAST_USED, root):
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
    return 0.0


def expire_workspaces(max_age_s: float | None = None, now: float | None = None) -> list[Path]:
    """Remove anonymous workspaces unused for longer than ``max_age_s`` (default ``WORKSPACE_TTL_S``).

    Signed-in visitors' workspaces are kept (they come back with the same account); returns the removed folders.
    """
    root = Path(constants.WORKSPACES_DIR)
    limit = (time.time() if now is None else now) - (constants.WORKSPACE_TTL_S if max_age_s is None else max_age_s)
    removed = []
    try:
        children = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        return []
    for child in children:
        if child.name.startswith(SESSION_PREFIX) and child.is_dir() and last_used(child) < limit:
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


# --------------------------------------------------------------------------- trainings
@dataclass
class TrainingQueue:
    """One training at a time in this process, at most one per visitor, first come first served.

    >>> queue = TrainingQueue()
    >>> with queue.place("s-abc") as ticket:
    ...     ticket.wait()   # returns when it is this visitor's turn
    """

    slots: int = 1
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _waiting: list[str] = field(default_factory=list, repr=False)
    _running: set[str] = field(default_factory=set, repr=False)

    @contextlib.contextmanager
    def place(self, key: str) -> Iterator[_Ticket]:
        """Join the queue as visitor ``key``; leaving the block frees the place (and the slot once running).

        Raises:
            QuotaError: this visitor already has a training queued or running.
        """
        with self._cond:
            if key in self._waiting or key in self._running:
                raise QuotaError("You already have a training queued or running: wait for it to finish, "
                                 "or cancel it, before starting another.")
            self._waiting.append(key)
        try:
            yield _Ticket(self, key)
        finally:
            with self._cond:
                if key in self._waiting:
                    self._waiting.remove(key)
                self._running.discard(key)
                self._cond.notify_all()

    def ahead_of(self, key: str) -> int:
        """Trainings running or waiting before ``key``'s (0: it runs or is next)."""
        with self._cond:
            if key in self._running or key not in self._waiting:
                return 0
            return len(self._running) + self._waiting.index(key) - (self.slots - 1)

    def _start_if_turn(self, key: str) -> bool:
        with self._cond:
            if self._waiting and self._waiting[0] == key and len(self._running) < self.slots:
                self._waiting.pop(0)
                self._running.add(key)
                return True
            return False


@dataclass
class _Ticket:
    queue: TrainingQueue
    key: str

    def wait(self, on_wait: Callable[[int], None] | None = None, poll_s: float = 1.0) -> None:
        """Block until it is this visitor's turn; ``on_wait(trainings ahead)`` is called while waiting (it may
        raise, e.g. when the visitor cancels: the place is freed by :meth:`TrainingQueue.place`)."""
        while not self.queue._start_if_turn(self.key):
            if on_wait is not None:
                on_wait(max(1, self.queue.ahead_of(self.key)))
            with self.queue._cond:
                self.queue._cond.wait(poll_s)
