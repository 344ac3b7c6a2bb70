"""A public Space's visitors keep their data, models and credentials: the app in shared mode, driven by
several ``gradio_client`` sessions as strangers would.

One app server (subprocess) runs in shared mode as on a Space (``SPACE_ID`` set) with the operator's token
(``HF_TOKEN``) on the server, one shared model in its store, a namespace opened to everyone's pushes
(``IADBE_PUSH_NAMESPACE``), a small disk quota, and Gradio's local mock login (``IADBE_MOCK_LOGIN``). Its
only Hub is a local Hub-compatible server of this module on which Gradio's mock OAuth token is a user of
its own (``OAUTH_USER``), so a push shows whose token wrote it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest
from test_app import make_parts_dataset, start_app, zip_folder

from hub_server import HUB_ORG, HUB_TOKEN, HUB_USER, OTHER_TOKEN, OTHER_USER, FakeHub

SHARED_MODEL = "shared-padim"
MOCK_OAUTH_TOKEN = "mock-oauth-token-for-local-dev"  # what Gradio's mock login hands out (gradio/oauth.py)
OAUTH_USER = "oauth-visitor"
QUOTA_BYTES = 200 * 2**20
TRAIN_ARGS = ("", "", "padim", "tf_efficientnet_lite0", 64, 1, 0)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = FakeHub(tmp_path_factory.mktemp("wshub"), {HUB_TOKEN: HUB_USER, OTHER_TOKEN: OTHER_USER,
                                                         MOCK_OAUTH_TOKEN: OAUTH_USER}, orgs={HUB_USER: [HUB_ORG]})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def space(tmp_path_factory, hub):
    from iadbe.training import train

    base = tmp_path_factory.mktemp("space")
    home, store = base / "home", base / "home" / "models"
    data = make_parts_dataset(base / "parts")
    train("padim", "folder", data, backbone="tf_efficientnet_lite0", image_size=64, out=store / SHARED_MODEL)
    workspaces = home / "workspaces"
    expired = workspaces / "s-expired0000"
    (expired / "models").mkdir(parents=True)
    old = time.time() - 3 * 3600
    os.utime(expired, (old, old))
    server = start_app(home, store, data, hub.url, SPACE_ID="tests/iadbe", HF_TOKEN=HUB_TOKEN,
                       HF_TOKEN_PATH=str(home / "no_hf_token"), IADBE_PUSH_NAMESPACE=HUB_ORG,
                       IADBE_WORKSPACE_MAX_BYTES=str(QUOTA_BYTES), IADBE_WORKSPACE_TTL_S="3600",
                       IADBE_MOCK_LOGIN="1")
    server.workspaces = workspaces
    server.expired = expired
    yield server
    server.stop()


def client(url: str, **kwargs):
    from gradio_client import Client

    return Client(url, verbose=False, **kwargs)


def model_ids(visitor) -> list[str]:
    return [row[0] for row in visitor.predict(api_name="/models")["data"]]


def workspace_of(space, visitor) -> Path:
    import hashlib

    return space.workspaces / ("s-" + hashlib.sha256(visitor.session_hash.encode()).hexdigest()[:32])


def test_an_expired_anonymous_workspace_is_removed_at_start(space):
    assert not space.expired.exists(), space.log_tail()


def test_a_visitors_model_is_theirs_alone(space, hub, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    alice, bob = client(space.url), client(space.url)
    archive = zip_folder(make_parts_dataset(tmp_path / "alices-parts", seed=3), tmp_path / "alices-parts.zip")
    status, _, _, _, result, _, _ = alice.predict(handle_file(str(archive)), *TRAIN_ARGS, "alice-padim",
                                                  api_name="/train")
    assert "alice-padim" in status, status
    location = result["model_dir"]
    assert Path(location).parent.parent == workspace_of(space, alice)
    assert not (space.store / "alice-padim").exists()  # not in the server's shared store

    assert {SHARED_MODEL, "alice-padim"} <= set(model_ids(alice))
    assert SHARED_MODEL in model_ids(bob) and "alice-padim" not in model_ids(bob)
    own = alice.predict(None, None, None, None, api_name="/refresh_models")
    assert [c[1] for c in own[3]["choices"]] == ["alice-padim"], own[3]
    bobs = bob.predict(None, None, None, None, api_name="/refresh_models")
    assert bobs[3]["choices"] == [] and "alice-padim" not in str(bobs[0])

    image = handle_file(str(sorted((space.data / "defect").glob("*.png"))[0]))
    guesses = ["alice-padim", location, f"{location}/", str(Path(location).parent.parent.name) + "/models/alice-padim",
               f"../workspaces/{Path(location).parent.parent.name}/models/alice-padim"]
    for guess in guesses:
        with pytest.raises(AppError, match="Unknown model"):
            bob.predict(image, guess, "auto", 0.5, 0.5, api_name="/predict")
        with pytest.raises(AppError, match="Unknown model"):
            bob.predict(image, [SHARED_MODEL, guess], "auto", 0.5, 0.5, api_name="/compare")
        with pytest.raises(AppError, match="not one of your models"):
            bob.predict(guess, f"{OTHER_USER}/stolen", False, OTHER_TOKEN, "", api_name="/push")
        with pytest.raises(AppError, match="not one of your models"):
            bob.predict(guess, api_name="/delete_model")
    with pytest.raises(AppError, match="not one of your models"):  # shared models are nobody's to delete
        bob.predict(SHARED_MODEL, api_name="/delete_model")
    assert (space.store / SHARED_MODEL).is_dir() and Path(location).is_dir()
    assert not [repo for _, repo in hub.repos if repo.endswith("stolen")]
    assert 0 <= bob.predict(image, SHARED_MODEL, "auto", 0.5, 0.5, api_name="/predict")[4] <= 1

    # the owner can do all of it
    assert 0 <= alice.predict(image, "alice-padim", "auto", 0.5, 0.5, api_name="/predict")[4] <= 1
    _, rows = alice.predict(image, [SHARED_MODEL, "alice-padim"], "auto", 0.5, 0.5, api_name="/compare")
    assert [row[0] for row in rows["data"]] == [SHARED_MODEL, "alice-padim"]
    message, box = alice.predict("alice-padim", f"{OTHER_USER}/alices-model", False, OTHER_TOKEN, "",
                                 api_name="/push")
    assert message.startswith("Pushed") and box == "" and ("model", f"{OTHER_USER}/alices-model") in hub.repos

    # with the server's HF_TOKEN and an empty token box: only into the operator's namespace
    with pytest.raises(AppError, match=f"only into {HUB_ORG}/"):
        alice.predict("alice-padim", f"{HUB_USER}/via-server-token", False, "", "", api_name="/push")
    assert ("model", f"{HUB_USER}/via-server-token") not in hub.repos
    message, _ = alice.predict("alice-padim", f"{HUB_ORG}/visitors-model", False, "", "", api_name="/push")
    assert message.startswith("Pushed") and ("model", f"{HUB_ORG}/visitors-model") in hub.repos
    log = space.log.read_text(encoding="utf-8", errors="replace")
    assert HUB_TOKEN not in log and OTHER_TOKEN not in log

    assert "1 of 5 models" in alice.predict(api_name="/workspace")
    assert alice.predict("alice-padim", api_name="/delete_model").startswith("Deleted")
    assert not Path(location).exists() and "alice-padim" not in model_ids(alice)
    assert alice.predict(api_name="/delete_data").startswith("Deleted")
    assert not (workspace_of(space, alice) / "uploads").exists()


def test_an_upload_over_the_quota_is_refused_before_unpacking(space, tmp_path):
    import zipfile

    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    visitor = client(space.url)
    archive = tmp_path / "too-big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("parts/good/000.png", b"not read")
        with bundle.open("parts/good/huge.bin", "w") as handle:  # 210 MB of zeros: a few hundred KB zipped
            for _ in range(210):
                handle.write(bytes(2**20))
    for endpoint in ("/inspect", "/train"):
        args = (handle_file(str(archive)), "", "") if endpoint == "/inspect" else (
            handle_file(str(archive)), *TRAIN_ARGS, "too-big")
        with pytest.raises(AppError, match="unpacks to 210.0 MB.*Nothing was unpacked"):
            visitor.predict(*args, api_name=endpoint)
    assert not workspace_of(space, visitor).exists()  # nothing unpacked, not even an empty folder


def _mock_login(url: str) -> str:
    """Gradio's mock login (what the Sign-in button does locally): the signed session cookie it sets."""
    parts = urllib.parse.urlsplit(url)
    path = "/login/huggingface"
    for _ in range(4):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        cookie = response.getheader("set-cookie")
        location = response.getheader("location")
        connection.close()
        if cookie and cookie.startswith("session="):
            return cookie.split(";", 1)[0]
        assert location, f"no redirect from {path}: {response.status}"
        path = urllib.parse.urlsplit(location)._replace(scheme="", netloc="").geturl()
    raise AssertionError("the mock login set no session cookie")


def test_a_signed_in_visitor_pushes_with_their_own_oauth_token(space, hub):
    from gradio_client.exceptions import AppError

    cookie = _mock_login(space.url)
    signed_in = client(space.url, headers={"Cookie": cookie})
    # the mock signs in as the account of the server's token (HUB_USER); that visitor's workspace is hf-<name>
    assert f"signed in as **{HUB_USER}**" in signed_in.predict(api_name="/workspace")
    models = space.workspaces / f"hf-{HUB_USER}" / "models"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copytree(space.store / SHARED_MODEL, models / "signed-in-model")
    assert "signed-in-model" in model_ids(signed_in)
    assert "signed-in-model" not in model_ids(client(space.url))  # an anonymous visitor does not see it

    # an empty token box: the visitor's OAuth token (here the mock's, a user of its own on this Hub) writes
    message, _ = signed_in.predict("signed-in-model", f"{OAUTH_USER}/from-oauth", False, "", "", api_name="/push")
    assert message.startswith("Pushed") and ("model", f"{OAUTH_USER}/from-oauth") in hub.repos
    # the OAuth token may not write where only the server's token could: the server's token was not used
    with pytest.raises(AppError, match="rights|403|Forbidden|not allowed|permission"):
        signed_in.predict("signed-in-model", f"{HUB_USER}/not-with-oauth", False, "", "", api_name="/push")
    assert ("model", f"{HUB_USER}/not-with-oauth") not in hub.repos
    assert MOCK_OAUTH_TOKEN not in space.log.read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize("shared_mode", [True, False])
def test_without_a_namespace_the_servers_token_never_pushes(hub_env, tmp_path, monkeypatch, shared_mode):
    """``HF_TOKEN`` set on the server, an empty token box, nobody signed in: refused, nothing reaches the Hub."""
    import json
    from types import SimpleNamespace

    import gradio as gr

    from iadbe import constants
    from iadbe.app.training_tab import push
    from iadbe.workspaces import identify, open_workspace

    monkeypatch.setattr(constants, "SHARED_MODE", shared_mode)
    monkeypatch.setattr(constants, "WORKSPACES_DIR", tmp_path / "workspaces")
    monkeypatch.setattr(constants, "MODEL_STORE", tmp_path / "store")
    monkeypatch.setattr(constants, "MANIFEST_PATH", tmp_path / "no-manifest.yaml")
    monkeypatch.setattr(constants, "PUSH_NAMESPACE", "")
    assert os.environ["HF_TOKEN"] == HUB_TOKEN  # the server has a token that could write both repos below
    request = SimpleNamespace(session_hash="visitor-1")
    model = open_workspace(identify(None, "visitor-1")).models_dir / "mine"
    model.mkdir(parents=True)
    meta = {"schema_version": 1, "name": "mine", "model": "padim", "detector": {}, "postprocess": {}}
    (model / "iadbe.json").write_text(json.dumps(meta))
    before = len(hub_env.server.requests)
    for repo in (hub_env.repo_id("server-token"), hub_env.repo_id("server-token", owner=HUB_ORG)):
        with pytest.raises(gr.Error, match="never pushes with the server's token"):
            push("mine", repo, False, "", "", request)
        with pytest.raises(gr.Error, match="never pushes with the server's token"):
            push("mine", repo, False, "   ", "", request, None, None)
    assert len(hub_env.server.requests) == before  # not even a request went out


def test_the_sign_in_button_is_on_the_page_in_shared_mode(space):
    """The page of the Space-like server (``SPACE_ID`` set) holds Gradio's LoginButton."""
    config = client(space.url).config
    buttons = [c["props"] for c in config["components"] if c.get("props", {}).get("elem_id") == "login"]
    assert len(buttons) == 1 and "Sign in with Hugging Face" in str(buttons[0].get("value")), buttons


def test_a_browser_shows_the_sign_in_button_when_space_id_is_set(space):
    chromium = Path(shutil.which("chromium") or "/usr/bin/chromium")
    if not chromium.is_file():
        pytest.skip("no Chromium at /usr/bin/chromium: `apt-get install -y chromium` for the browser half")
    sync_api = pytest.importorskip("playwright.sync_api", reason="`pip install playwright` for the browser half")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(space.url)
        button = page.locator("#login")
        button.wait_for(state="visible")
        assert "Sign in" in button.inner_text()
        button.click()  # Gradio's mock login: back on the page, signed in as the server token's account
        page.wait_for_function("() => (document.querySelector('#login') || {}).innerText?.includes('Logout')")
        assert HUB_USER in page.locator("#login").inner_text()
        page.get_by_role("tab", name="Training", exact=True).click()
        page.get_by_text("Your models and data").click()
        page.get_by_text(f"signed in as {HUB_USER}").wait_for()
        browser.close()


def test_single_user_mode_offers_no_sign_in_and_lists_every_local_model(monkeypatch, tmp_path):
    import gradio as gr

    from iadbe import constants
    from iadbe.app.common import model_choices, visitor_workspace
    from iadbe.app.ui import build_app, offers_login

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path)
    monkeypatch.setattr(constants, "MODEL_STORE", tmp_path / "models")
    monkeypatch.setattr(constants, "MANIFEST_PATH", tmp_path / "no-manifest.yaml")
    monkeypatch.setattr(constants, "MOCK_LOGIN", True)
    monkeypatch.setattr(constants, "OAUTH_CONFIGURED", True)
    monkeypatch.setattr(constants, "SHARED_MODE", False)
    assert not offers_login()
    demo = build_app()
    assert not any(isinstance(block, gr.LoginButton) for block in demo.blocks.values())
    from test_workspaces import fake_model

    fake_model(tmp_path / "models", "someone-elses-run")
    workspace = visitor_workspace(type("Request", (), {"session_hash": "any"})())
    assert not workspace.private
    assert [value for _, value in model_choices(True, workspace)] == ["someone-elses-run"]
    monkeypatch.setattr(constants, "SHARED_MODE", True)
    assert offers_login()


def test_one_training_per_visitor_and_the_others_see_their_place(space, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    alice, bob = client(space.url), client(space.url)
    archive = handle_file(str(zip_folder(make_parts_dataset(tmp_path / "queue", seed=4), tmp_path / "queue.zip")))
    long_run = ("", "", "stfpm", "tf_efficientnet_lite0", 64, 500, 0)  # cancelled long before its 500 epochs
    first = alice.submit(archive, *long_run, "alice-long", api_name="/train")
    deadline = time.time() + 90
    while time.time() < deadline and "epoch" not in str(first.status().progress_data or "").lower():
        time.sleep(0.3)  # until Alice's run trains (it holds the one training slot)
    with pytest.raises(AppError, match="already have a training queued or running"):
        alice.predict(archive, *long_run, "alice-second", api_name="/train")
    waiting = bob.submit(archive, *long_run, "bob-waits", api_name="/train")
    seen, deadline = "", time.time() + 60
    while time.time() < deadline and "ahead of yours" not in seen:
        seen = str(waiting.status().progress_data or "")
        time.sleep(0.3)
    assert "queued: 1 training(s) ahead of yours" in seen, seen
    assert bob.predict(api_name="/cancel").startswith("Cancelling")
    with pytest.raises(AppError, match="Training cancelled"):
        waiting.result(timeout=60)
    assert alice.predict(api_name="/cancel").startswith("Cancelling")
    with pytest.raises(AppError, match="Training cancelled"):
        first.result(timeout=120)
    for visitor in (alice, bob):
        models = workspace_of(space, visitor) / "models"
        assert not models.exists() or not any(models.iterdir())
