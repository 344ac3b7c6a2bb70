"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only).

The real ``huggingface_hub`` client (2.4) talks to it unmodified: point ``HF_ENDPOINT`` (or
``huggingface_hub.constants.ENDPOINT`` *and* ``HUGGINGFACE_CO_URL_TEMPLATE``, see ``tests/conftest.py``)
at :attr:`FakeHub.url`.

What it implements (the routes huggingface_hub 2.4 calls for these operations):

=====================================================  =============================================
route                                                  used by
=====================================================  =============================================
``GET  /api/whoami-v2``                                ``whoami``
``POST /api/validate-yaml``                            ``create_commit`` when a ``README.md`` is added
``POST /api/repos/create``                             ``create_repo`` (409 when it exists)
``GET  /api/{models|datasets}/O/N[/revision/R]``       ``repo_info`` / ``model_info`` / ``dataset_info``
``GET  /api/{models|datasets}/O/N/tree/R[/PATH]``      ``list_repo_tree`` / ``list_repo_files``
``GET  /api/{models|datasets}/O/N/commits/R``          ``list_repo_commits``
``POST /api/{models|datasets}/O/N/preupload/R``        ``create_commit`` (always ``uploadMode: regular``)
``POST /api/{models|datasets}/O/N/commit/R``           ``create_commit`` (ndjson, base64 file content)
``HEAD|GET /[datasets/]O/N/resolve/R/PATH``            ``hf_hub_download`` / ``snapshot_download``
=====================================================  =============================================

Files are stored as git blobs (``sha1("blob <len>\\0" + data)``, the ETag the client names its cache blobs
after); commits get 40-hex ids. No Xet or LFS header is ever sent, so the client uses plain HTTP.

Auth mirrors the Hub: a request with an unknown bearer token gets 401 "Invalid credentials in
Authorization header"; a private (or missing) repo answers 401 ``RepoNotFound`` to anonymous callers
and 404 ``RepoNotFound`` to authenticated ones who cannot read it; writes need the owner's token.

Test switches: :meth:`FakeHub.fail_next_commit`, :meth:`FakeHub.tamper`, :attr:`FakeHub.echo_auth_in_errors`
(the server copies the received ``Authorization`` header into its error messages, to prove that callers
redact it), :attr:`FakeHub.requests` (a log of what was asked). :func:`silent_endpoint` and
:func:`refused_endpoint` give URLs that hang or refuse, to test offline fallbacks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

#: Accounts of the test server used by tests/conftest.py (tokens are fake, valid only there).
HUB_USER = "iadbe-tester"
HUB_TOKEN = "hf_iadbeTestTokenAAAAbbbbCCCCddddEEEE1234"
HUB_ORG = "iadbe-test-org"
OTHER_USER = "someone-else"
OTHER_TOKEN = "sk-planted-7Rq2ZxLw9Kp4VtNe"  # deliberately not hf_-shaped: redaction must not rely on the shape

_PREFIX = {"model": "", "dataset": "datasets/"}
_API_TYPES = {"models": "model", "datasets": "dataset"}
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of ``data`` (what ``git hash-object`` prints; the Hub's ETag of a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, str]  # path -> blob sha1
    title: str
    message: str
    author: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.repo_id.split("/")[0]


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    authenticated: bool


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}


class FakeHub:
    """In-memory repos + on-disk blobs, served on ``127.0.0.1`` by a thread.

    Args:
        root: folder for the blob store.
        users: ``{token: username}`` of the accepted bearer tokens.
        orgs: ``{username: [org, ...]}``: namespaces a user may also write to.
    """

    def __init__(self, root: Path, users: dict[str, str], orgs: dict[str, list[str]] | None = None):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.users = dict(users)
        self.orgs = dict(orgs or {})
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[RequestRecord] = []
        self.echo_auth_in_errors = False
        self._fail_commits: list[tuple[int, str]] = []
        self._tampered: dict[tuple[str, str, str, str], bytes] = {}
        self._lock = threading.RLock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeHub is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- test switches
    def fail_next_commit(self, status: int = 500, message: str = "Internal Error - simulated commit failure") -> None:
        """Make the next ``POST .../commit/...`` fail with ``status`` (nothing is stored)."""
        with self._lock:
            self._fail_commits.append((status, message))

    def tamper(self, repo_id: str, path: str, data: bytes, *, revision: str = "main", repo_type: str = "model") -> None:
        """Serve ``data`` for ``path`` at ``revision`` from now on, keeping the commit id and the ETag."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            oid = self._resolve(repo, revision)
            if path not in repo.commits[oid].files:
                raise KeyError(f"{path} not in {repo_id}@{oid}")
            self._tampered[(repo_type, repo_id, oid, path)] = data

    def reset_switches(self) -> None:
        with self._lock:
            self._fail_commits.clear()
            self._tampered.clear()
            self.echo_auth_in_errors = False
            self.requests.clear()

    # ----------------------------------------------------------------- direct access for tests
    def seed(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        repo_type: str = "model",
        private: bool = False,
        message: str = "seed",
    ) -> str:
        """Create ``repo_id`` if needed and commit ``files`` to ``main`` without going through HTTP."""
        with self._lock:
            if (repo_type, repo_id) not in self.repos:
                self._create(repo_type, repo_id, private)
            repo = self.repos[(repo_type, repo_id)]
            ops = [("file", p, d) for p, d in files.items()]
            return self._commit(repo, "main", ops, message, "", repo.owner).oid

    def commits(self, repo_id: str, *, repo_type: str = "model") -> list[Commit]:
        """Commits on ``main``, newest first."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            out, oid = [], repo.branches["main"]
            while oid is not None:
                out.append(repo.commits[oid])
                oid = repo.commits[oid].parent
            return out

    def files_at(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> dict[str, bytes]:
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit = repo.commits[self._resolve(repo, revision)]
            return {p: self._blob(sha) for p, sha in commit.files.items()}

    # ----------------------------------------------------------------- internals
    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        try:
            return self.repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id}") from None

    def _blob(self, sha: str) -> bytes:
        return (self.root / "blobs" / sha).read_bytes()

    def _store_blob(self, data: bytes) -> str:
        sha = git_blob_sha1(data)
        path = self.root / "blobs" / sha
        if not path.exists():
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha

    def _create(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created=_now())
        self.repos[(repo_type, repo_id)] = repo
        # Like the Hub: a new repo has an "initial commit" holding .gitattributes.
        self._commit(repo, "main", [("file", ".gitattributes", _GITATTRIBUTES)], "initial commit", "", "system")
        return repo

    def _resolve(self, repo: Repo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [oid for oid in repo.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _commit(self, repo: Repo, branch: str, ops: list[tuple], title: str, message: str, author: str) -> Commit:
        parent_oid = repo.branches.get(branch)
        files = dict(repo.commits[parent_oid].files) if parent_oid else {}
        for kind, path, data in ops:
            if kind == "file":
                files[path] = self._store_blob(data)
            elif kind == "deletedFile":
                if path not in files:
                    raise _HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif kind == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                for p in [p for p in files if p.startswith(prefix)]:
                    del files[p]
        self._counter += 1
        digest = json.dumps([parent_oid, sorted(files.items()), title, message, self._counter, time.time()])
        oid = hashlib.sha1(digest.encode()).hexdigest()
        commit = Commit(oid, parent_oid, files, title, message, author, _now())
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def _served_bytes(self, repo: Repo, oid: str, path: str) -> bytes:
        tampered = self._tampered.get((repo.repo_type, repo.repo_id, oid, path))
        return tampered if tampered is not None else self._blob(repo.commits[oid].files[path])


def _repo_info_json(hub: FakeHub, repo: Repo, oid: str, blobs: bool) -> dict[str, Any]:
    commit = repo.commits[oid]
    siblings = []
    for path, sha in sorted(commit.files.items()):
        item: dict[str, Any] = {"rfilename": path}
        if blobs:
            item.update(size=len(hub._blob(sha)), blobId=sha)
        siblings.append(item)
    return {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "author": repo.owner,
        "sha": oid,
        "lastModified": commit.date,
        "createdAt": repo.created,
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    }


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub  # set by FakeHub.start
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    # ------------------------------------------------------------ plumbing
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", f"fakehub-{id(self) & 0xFFFFFF:06x}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _user(self) -> str | None:
        """The user of the bearer token, None when anonymous; raises 401 on an unknown token."""
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        token = auth.split(" ", 1)[1].strip() if auth.lower().startswith("bearer ") else auth
        user = self.hub.users.get(token)
        if user is None:
            raise _HubError(401, "Invalid credentials in Authorization header")
        return user

    # ------------------------------------------------------------ dispatch
    def _dispatch(self, method: str) -> None:
        body = self._read_body() if method == "POST" else b""
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        self.hub.requests.append(RequestRecord(method, path, bool(self.headers.get("Authorization"))))
        try:
            user = self._user()
            with self.hub._lock:
                self._route(method, path, query, body, user)
        except _HubError as err:
            body_message = err.message
            if self.hub.echo_auth_in_errors and self.headers.get("Authorization"):
                # in the JSON body only (huggingface_hub puts it into the exception message); a header would
                # also land in httpcore's DEBUG log, which no real Hub provokes
                body_message += f" (request had Authorization: {self.headers['Authorization']})"
            headers = dict(err.headers)
            if err.code:
                headers["X-Error-Code"] = err.code
            headers["X-Error-Message"] = err.message
            self._json(err.status, {**err.extra, "error": body_message}, headers)
        except Exception as err:  # a bug in the fake server: answer 500 with the reason
            self._json(500, {"error": f"FakeHub bug: {type(err).__name__}: {err}"})

    def _route(self, method: str, path: str, query: dict, body: bytes, user: str | None) -> None:
        segs = [unquote(s) for s in path.strip("/").split("/")]
        if path == "/api/whoami-v2" and method == "GET":
            return self._whoami(user)
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(body)
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(user, body)
        if len(segs) >= 3 and segs[0] == "api" and segs[1] in _API_TYPES:
            repo_type = _API_TYPES[segs[1]]
            repo_id = f"{segs[2]}/{segs[3]}" if len(segs) >= 4 else segs[2]
            rest = segs[4:]
            if not rest and method == "GET":
                return self._info(user, repo_type, repo_id, "main", query)
            if len(rest) == 2 and rest[0] == "revision" and method == "GET":
                return self._info(user, repo_type, repo_id, rest[1], query)
            if len(rest) >= 2 and rest[0] == "tree" and method == "GET":
                return self._tree(user, repo_type, repo_id, rest[1], "/".join(rest[2:]), query)
            if len(rest) == 2 and rest[0] == "commits" and method == "GET":
                return self._list_commits(user, repo_type, repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "preupload" and method == "POST":
                return self._preupload(user, repo_type, repo_id, rest[1], body)
            if len(rest) == 2 and rest[0] == "commit" and method == "POST":
                return self._do_commit(user, repo_type, repo_id, rest[1], body, query)
        if method in ("GET", "HEAD"):
            repo_type = "model"
            if segs and segs[0] == "datasets":
                repo_type, segs = "dataset", segs[1:]
            if len(segs) >= 5 and segs[2] == "resolve":
                return self._resolve_file(user, repo_type, f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]))
        raise _HubError(404, f"Sorry, we can't find the page you are looking for: {method} {path}")

    # ------------------------------------------------------------ access control
    def _readable(self, user: str | None, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self._can_write(user, repo.owner)):
            status = 401 if user is None else 404
            raise _HubError(status, "Repository not found", "RepoNotFound")
        return repo

    def _can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (namespace == user or namespace in self.hub.orgs.get(user, []))

    def _writable(self, user: str | None, repo_type: str, repo_id: str) -> Repo:
        repo = self._readable(user, repo_type, repo_id)
        if not self._can_write(user, repo.owner):
            raise _HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    # ------------------------------------------------------------ endpoints
    def _whoami(self, user: str | None) -> None:
        if user is None:
            raise _HubError(401, "Invalid credentials in Authorization header")
        orgs = [{"name": org, "type": "org"} for org in self.hub.orgs.get(user, [])]
        self._json(200, {
            "type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user, "fullname": user,
            "email": None, "orgs": orgs, "avatarUrl": f"/avatars/{user}.svg",
            "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}},
        })

    def _validate_yaml(self, body: bytes) -> None:
        content = json.loads(body or b"{}").get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
        try:
            data = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            self._json(400, {"errors": [{"message": f"Invalid YAML: {err}"}]})
            return
        if data is not None and not isinstance(data, dict):
            self._json(400, {"errors": [{"message": "metadata must be a mapping"}]})
            return
        self._json(200, {"warnings": []})

    def _create_repo(self, user: str | None, body: bytes) -> None:
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        if repo_type not in _PREFIX:
            raise _HubError(400, f"Unsupported repo type {repo_type}")
        if user is None:
            raise _HubError(401, "You must be authenticated to create a repo")
        namespace = payload.get("organization") or user
        name = payload.get("name") or ""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name) or "--" in name or ".." in name:
            raise _HubError(400, f"Invalid repo name {name!r}")
        if not self._can_write(user, namespace):
            raise _HubError(403, f"You don't have the rights to create a repo under {namespace}")
        repo_id = f"{namespace}/{name}"
        url = f"{self.hub.url}/{_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            # Like the Hub, the 409 body carries the url: `create_repo(exist_ok=True)` reads it.
            raise _HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
        self.hub._create(repo_type, repo_id, payload.get("visibility") == "private")
        self._json(200, {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _info(self, user: str | None, repo_type: str, repo_id: str, revision: str, query: dict) -> None:
        repo = self._readable(user, repo_type, repo_id)
        oid = self.hub._resolve(repo, revision)
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        self._json(200, _repo_info_json(self.hub, repo, oid, blobs))

    def _tree(self, user: str | None, repo_type: str, repo_id: str, revision: str, sub: str, query: dict) -> None:
        repo = self._readable(user, repo_type, repo_id)
        oid = self.hub._resolve(repo, revision)
        files = repo.commits[oid].files
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        entries: dict[str, dict] = {}
        for path, sha in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, min(depth, len(parts) - 1) + 1):  # folders on the way
                folder = prefix + "/".join(parts[:i])
                entries.setdefault(folder, {
                    "type": "directory", "path": folder, "size": 0,
                    "oid": hashlib.sha1(f"{oid}:{folder}".encode()).hexdigest(),
                })
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "path": path, "size": len(self.hub._blob(sha)), "oid": sha}
        if prefix and not entries:
            raise _HubError(404, f"Entry not found: {sub}", "EntryNotFound", {"X-Repo-Commit": oid})
        self._json(200, list(entries.values()), {"X-Repo-Commit": oid})

    def _list_commits(self, user: str | None, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._readable(user, repo_type, repo_id)
        oid: str | None = self.hub._resolve(repo, revision)
        out = []
        while oid is not None:
            c = repo.commits[oid]
            out.append({"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                        "authors": [{"user": c.author}]})
            oid = c.parent
        self._json(200, out)

    def _preupload(self, user: str | None, repo_type: str, repo_id: str, revision: str, body: bytes) -> None:
        repo = self._writable(user, repo_type, repo_id)
        oid = self.hub._resolve(repo, revision)
        files = repo.commits[oid].files
        payload = json.loads(body or b"{}")
        answer = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": files.get(f["path"])}
            for f in payload.get("files", [])
        ]
        self._json(200, {"files": answer, "commitOid": oid})

    def _do_commit(self, user: str | None, repo_type: str, repo_id: str, revision: str, body: bytes,
                   query: dict) -> None:
        repo = self._writable(user, repo_type, repo_id)
        if query.get("create_pr"):
            raise _HubError(400, "FakeHub does not support pull requests")
        if revision not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        if self.hub._fail_commits:
            status, message = self.hub._fail_commits.pop(0)
            raise _HubError(status, message)
        header: dict[str, Any] = {}
        ops: list[tuple] = []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise _HubError(400, "only base64 file content is supported")
                ops.append(("file", _clean_path(value["path"]), base64.b64decode(value["content"])))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append((key, _clean_path(value["path"]), None))
            else:  # lfsFile: we never answered uploadMode "lfs", so this is a client bug
                raise _HubError(400, f"unsupported commit operation {key!r} (FakeHub only does regular files)")
        parent = header.get("parentCommit")
        if parent and parent != repo.branches[revision]:
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")
        commit = self.hub._commit(repo, revision, ops, header.get("summary", ""), header.get("description", ""),
                                  user or "anonymous")
        url = f"{self.hub.url}/{_PREFIX[repo_type]}{repo_id}/commit/{commit.oid}"
        self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": ""})

    def _resolve_file(self, user: str | None, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._readable(user, repo_type, repo_id)
        oid = self.hub._resolve(repo, revision)
        commit = repo.commits[oid]
        if path not in commit.files:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": oid})
        data = self.hub._served_bytes(repo, oid, path)
        headers = {"X-Repo-Commit": oid, "ETag": f'"{commit.files[path]}"', "Accept-Ranges": "none"}
        self._send(200, data, headers, ctype="application/octet-stream")


def _clean_path(path: str) -> str:
    parts = path.strip("/").split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise _HubError(400, f"Invalid path in repo: {path!r}")
    return "/".join(parts)


# --------------------------------------------------------------------------- unreachable endpoints
@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """A URL whose TCP connections are accepted by the kernel but never answered (a hanging server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def refused_endpoint() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"
