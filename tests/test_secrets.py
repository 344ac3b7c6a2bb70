"""Secrets and trust: a planted Hugging Face token never shows up in messages, logs or files, and the app
serves no file outside its own output folder (nor accepts server paths as uploads).

The Hub test server is told to copy the received ``Authorization`` header into its error messages
(``echo_auth_in_errors``), so a caller that forwards the server's message without redacting it would leak.
The library-level redaction is covered in ``tests/test_hub.py``; here the CLI (a real process, ``-v``) and the
running app are checked, and every file written under their homes is searched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

try:
    from .hub_server import HUB_TOKEN, HUB_USER, OTHER_USER
    from .test_app import FIXTURE_MODEL, PROJECT, running_app
except ImportError:
    from hub_server import HUB_TOKEN, HUB_USER, OTHER_USER
    from test_app import FIXTURE_MODEL, PROJECT, running_app

#: Does not look like a Hub token (no ``hf_`` prefix): only exact-token redaction can hide it.
PLANTED = "PlantedSecret-4f9c2a7e-token"


def files_holding(root: Path, *secrets: str) -> list[str]:
    """Files under ``root`` whose bytes contain any of ``secrets`` (as text or in a binary file)."""
    needles = [s.encode() for s in secrets]
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                found.append(str(path))
    return found


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, hub_server):
    return running_app(tmp_path_factory, hub_server)


# --------------------------------------------------------------------------- CLI
CLI_DRIVER = textwrap.dedent("""
    import json, os, sys
    from iadbe.cli import main
    codes = []
    for token, argv in json.loads(sys.argv[1]):
        os.environ["HF_TOKEN"] = token
        codes.append(main(argv))
        print("--- exit", codes[-1], file=sys.stderr, flush=True)
    print(json.dumps(codes))
""")


def test_cli_failures_never_show_or_write_the_token(hub_env, app, tmp_path):
    """Push, download, dataset and manifest failures in one CLI process with verbose logs: the planted token
    (invalid: 401) and a valid token used where it has no rights (403/404) appear nowhere."""
    import yaml

    private = hub_env.repo_id("secret-private")  # never created: the Hub answers 401 to the planted token
    entry_id = "secret-entry"
    entry = {"id": entry_id, "display_name": "secret", "model": "padim", "repo_id": private,
             "path_in_repo": "padim/parts", "revision": "1" * 40, "license": "mit",
             "files": {"iadbe.json": "a" * 64, "weights.safetensors": "b" * 64}}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"models": [entry]}))
    model = tmp_path / "model"
    shutil.copytree(app.store / FIXTURE_MODEL, model)
    image = str(app.data / "good" / "000.png")
    home, out = tmp_path / "home", tmp_path / "out"
    runs = [
        (PLANTED, ["-v", "push", "--model-dir", str(model), "--repo-id", f"{HUB_USER}/secret-push"]),
        (PLANTED, ["-v", "predict", "--model", f"hf://{private}/padim/parts@main", "--out", str(out), image]),
        (PLANTED, ["-v", "models", "--download", entry_id]),
        # a Hub dataset through `zoo` (the same download as `train --root hf://datasets/...`, which first loads
        # torch and the backbones: 10+ s more for the same code path)
        (PLANTED, ["-v", "zoo", "--dataset", "folder", "--root", f"hf://datasets/{HUB_USER}/secret-data",
                   "--models", "padim", "--repo-id", f"{HUB_USER}/secret-zoo", "--work-dir", str(home / "zoo")]),
        (HUB_TOKEN, ["-v", "push", "--model-dir", str(model), "--repo-id", f"{OTHER_USER}/not-mine"]),
    ]
    hub_env.server.echo_auth_in_errors = True
    env = hub_env.subprocess_env(IADBE_HOME=str(home), IADBE_MANIFEST=str(tmp_path / "manifest.yaml"))
    result = subprocess.run([sys.executable, "-c", CLI_DRIVER, json.dumps(runs)], cwd=PROJECT, env=env,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [2] * len(runs), output[-3000:]
    assert "Traceback" not in output
    assert output.count("token missing or invalid") >= 3, output[-3000:]
    assert "no permission" in output or "HTTP 403" in output
    assert "***" in output  # the server did echo the header: the messages were redacted, not just lucky
    for secret in (PLANTED, HUB_TOKEN):
        assert secret not in output
    assert files_holding(tmp_path, PLANTED, HUB_TOKEN) == []


# --------------------------------------------------------------------------- app
def test_app_push_failures_never_show_or_store_the_token(app, hub_server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app.url, verbose=False)
    hub_server.echo_auth_in_errors = True
    try:
        messages = []
        for token, repo in ((PLANTED, f"{HUB_USER}/secret-app"), (HUB_TOKEN, f"{OTHER_USER}/not-mine")):
            with pytest.raises(AppError) as caught:
                client.predict(FIXTURE_MODEL, repo, False, token, "", api_name="/push")
            messages.append(str(caught.value))
    finally:
        hub_server.echo_auth_in_errors = False
    assert "token missing or invalid" in messages[0] and "HTTP 403" in messages[1], messages
    assert all("***" in message for message in messages), messages  # echoed by the server, then redacted
    for secret in (PLANTED, HUB_TOKEN):
        assert not any(secret in message for message in messages)
        assert secret not in app.log.read_text(encoding="utf-8", errors="replace")
    assert files_holding(app.home, PLANTED, HUB_TOKEN) == []


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_app_serves_no_file_outside_its_folders(app, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False, download_files=False)
    result = client.predict(handle_file(str(app.data / "good" / "000.png")), FIXTURE_MODEL, "auto", 0.5, 0.5,
                            api_name="/predict")
    served = result[1]["url"]
    assert fetch(served)[0] == 200  # the control: a file the app made for this request is served

    model_file = app.store / FIXTURE_MODEL / "iadbe.json"
    outputs = app.home / "app_outputs"
    forbidden = {
        "/etc/passwd": "/etc/passwd",
        "model store": str(model_file),
        "weights": str(app.store / FIXTURE_MODEL / "weights.safetensors"),
        "traversal from the outputs": f"{outputs}/../models/{FIXTURE_MODEL}/iadbe.json",
        "encoded traversal": f"{outputs}/%2e%2e/models/{FIXTURE_MODEL}/iadbe.json",
        "server log": str(app.log),
        "source code": str(PROJECT / "iadbe" / "store.py"),
        "dataset on the server": str(app.data / "good" / "000.png"),
    }
    statuses = {}
    for what, path in forbidden.items():
        quoted = path if "%2e" in path else urllib.parse.quote(path)
        status, body = fetch(f"{app.url}gradio_api/file={quoted}")
        statuses[what] = status
        assert b"root:" not in body and b"schema_version" not in body
    print(f"file fetches refused: {statuses}")
    assert all(status in (403, 404) for status in statuses.values()), statuses


def call_raw(app, api_name: str, data: list) -> tuple[str, str]:
    """One event through Gradio's HTTP API, bypassing ``gradio_client`` (which would upload a local path
    itself): returns (``complete`` or ``error``, the payload)."""
    request = urllib.request.Request(f"{app.url}gradio_api/call/{api_name}", json.dumps({"data": data}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{app.url}gradio_api/call/{api_name}/{event_id}", timeout=120) as response:
        lines = response.read().decode().splitlines()
    events = [line.split(": ", 1)[1] for line in lines if line.startswith("event: ")]
    payloads = [line.split(": ", 1)[1] for line in lines if line.startswith("data: ")]
    return events[-1], payloads[-1] if payloads else ""


def test_app_refuses_server_paths_given_as_uploads(app):
    """A client may send a file value naming a path on the server instead of uploading a file: refused, for
    the events that skip Gradio's own check (``preprocess=False``) and for those that do not."""
    weights = app.store / FIXTURE_MODEL / "weights.safetensors"
    targets = (str(app.data / "good" / "000.png"), "/etc/passwd", str(weights))
    for path in targets:
        value = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}
        for api_name, models in (("predict", FIXTURE_MODEL), ("compare", [FIXTURE_MODEL, FIXTURE_MODEL])):
            extra = [0] if api_name == "predict" else []  # /predict's false alarms (%): 0 = calibrated point
            event, payload = call_raw(app, api_name, [value, models, "auto", 0.5, 0.5, *extra])
            # Gradio itself refuses paths in blocked_paths ("Cannot move ... blocked_paths"), IADBE the rest
            assert event == "error" and re.search("not uploaded|Cannot move", payload), (api_name, path, payload)
        event, payload = call_raw(app, "predict_batch", [[value], FIXTURE_MODEL, "auto", 0.5, 0.5])
        assert event == "error" and "schema_version" not in payload, (path, event, payload[:300])
        event, payload = call_raw(app, "inspect", [value, "", ""])
        assert event == "error", (path, event, payload[:300])
    event, payload = call_raw(app, "inspect", [None, "/etc", ""])
    assert event == "error" and "Folder not allowed" in payload, payload
    event, payload = call_raw(app, "inspect", [None, str(app.store), ""])
    assert event == "error" and "Folder not allowed" in payload, payload


def test_uploaded_zips_are_extracted_per_session_and_pruned(app, tmp_path):
    from gradio_client import Client, handle_file

    try:
        from .test_app import make_parts_dataset, zip_folder
    except ImportError:
        from test_app import make_parts_dataset, zip_folder

    archive = zip_folder(make_parts_dataset(tmp_path / "upload", seed=3), tmp_path / "upload.zip")
    sessions = app.home / "uploads" / "sessions"
    first = Client(app.url, verbose=False)
    first.predict(handle_file(str(archive)), "", "", api_name="/inspect")
    mine = sessions / first.session_hash
    assert mine.is_dir() and any(mine.iterdir())
    assert not [p for p in (app.home / "uploads").iterdir() if p.name != "sessions"]  # nothing shared
    old = 3 * 24 * 3600
    os.utime(mine, (os.path.getmtime(mine) - old,) * 2)
    second = Client(app.url, verbose=False)
    second.predict(handle_file(str(archive)), "", "", api_name="/inspect")
    assert not mine.exists() and (sessions / second.session_hash).is_dir()
