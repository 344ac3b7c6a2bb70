"""``python app.py`` with no network: it starts quickly and lists the manifest's models as not cached
(rather than hanging on Hub time-outs or crashing), and picking one says how to get it."""

from __future__ import annotations

import time

import pytest
import yaml
from hub_server import refused_endpoint
from test_app import make_parts_dataset, start_app

ENTRY = {
    "id": "padim-lite0-parts", "display_name": "PaDiM parts (on the Hub)", "model": "padim",
    "backbone": "tf_efficientnet_lite0", "dataset": "folder", "category": "parts",
    "repo_id": "iadbe-tester/offline-zoo", "path_in_repo": "padim/parts", "revision": "0" * 39 + "1",
    "files": {"iadbe.json": "a" * 64, "weights.safetensors": "b" * 64}, "image_size": [64, 64],
    "metrics": {"image_AUROC": 0.9}, "license": "apache-2.0",
}


@pytest.fixture(scope="module")
def offline_app(tmp_path_factory):
    base = tmp_path_factory.mktemp("offline_app")
    manifest = base / "models_manifest.yaml"
    manifest.write_text(yaml.safe_dump({"models": [ENTRY]}))
    home = base / "home"
    home.mkdir()
    # the Hub endpoint refuses every connection, as with no network at all
    server = start_app(home, home / "models", make_parts_dataset(base / "parts"), refused_endpoint(),
                       IADBE_MANIFEST=str(manifest))
    yield server
    server.stop()


def test_manifest_models_show_as_not_cached_and_explain_how_to_get_them(offline_app):
    from gradio_client import Client, handle_file

    client = Client(offline_app.url, verbose=False)
    started = time.perf_counter()
    rows = client.predict(api_name="/models")
    assert time.perf_counter() - started < 10
    row = next(r for r in rows["data"] if r[0] == ENTRY["id"])
    assert row[5] == "no"  # cached column
    image = next((offline_app.data / "good").glob("*.png"))
    with pytest.raises(Exception) as error:
        client.predict(handle_file(str(image)), ENTRY["id"], "auto", 0.5, 0.5, api_name="/predict")
    assert ENTRY["id"] in str(error.value) and "cache" in str(error.value).lower()
