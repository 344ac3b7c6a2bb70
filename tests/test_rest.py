"""The REST routes (``iadbe/app/rest.py``) on the real app server, over loopback with ``requests``.

The app server of ``tests/test_app.py`` (single-user mode, a 64 px PaDiM in its store) answers most tests;
one more server in shared mode checks that a visitor's workspace model cannot be reached. The hostile-input
corpus and the concurrent load go through these routes in ``tests/test_corpus.py`` and ``tests/test_load.py``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image

try:
    from .test_app import FIXTURE_MODEL, SCORE_TOL, library_prediction, running_app, start_app
except ImportError:
    from test_app import FIXTURE_MODEL, SCORE_TOL, library_prediction, running_app, start_app

requests = pytest.importorskip("requests")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, hub_server):
    return running_app(tmp_path_factory, hub_server)


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


def url(app, route: str) -> str:
    return app.url.rstrip("/") + "/api/v1" + route


def defect_image(app) -> bytes:
    return (app.data / "defect" / "d000.png").read_bytes()


def assert_error(response, status: int, code: str, pattern: str = "") -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert body["error"]["code"] == code, body
    assert pattern.lower() in body["error"]["message"].lower(), body
    return body["error"]["message"]


def test_predict_raw_bytes_gives_the_library_decision_and_its_mask(app, http):
    image = app.data / "defect" / "d000.png"
    expected = library_prediction(app.store / FIXTURE_MODEL, image, "openvino")
    response = http.post(url(app, "/predict"), params={"model": FIXTURE_MODEL, "mask": "png", "name": "d000.png"},
                         data=image.read_bytes(), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["score"] == pytest.approx(expected.score, abs=SCORE_TOL)
    assert body["label"] == expected.label_text and body["anomalous"] == expected.label
    assert (body["file"], body["model"], body["backend"], body["threshold"]) == ("d000.png", FIXTURE_MODEL,
                                                                                 "openvino", 0.5)
    assert body["image_size"] == [64, 64]
    assert set(body["timings_ms"]) == {"preprocess", "model", "postprocess"}
    assert body["server_ms"] >= sum(body["timings_ms"].values()) - 0.01
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"]))))
    assert mask.shape == (64, 64)
    np.testing.assert_array_equal(mask > 0, expected.mask)  # the decision mask the app draws

    polygons = http.post(url(app, "/predict"), params={"model": FIXTURE_MODEL, "mask": "polygons"},
                         data=image.read_bytes()).json()
    assert polygons["score"] == body["score"]
    if expected.label:
        assert polygons["regions"] and all(len(point) == 2 for point in polygons["regions"][0])
        xs, ys = zip(*(point for region in polygons["regions"] for point in region))
        assert expected.mask[list(ys), list(xs)].all()  # outline points lie on the mask's pixels


def test_the_readme_standard_library_client_keeps_one_connection_for_several_parts(app):
    """README's ``http.client`` example: one connection, part after part (what bench/rest.py times)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    where = urlsplit(app.url)
    line = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        answers, sockets = [], set()
        for name in ("good/000.png", "defect/d000.png", "good/000.png"):
            line.request("POST", f"/api/v1/predict?model={FIXTURE_MODEL}", body=(app.data / name).read_bytes(),
                         headers={"Content-Type": "image/png"})
            response = line.getresponse()
            assert response.status == 200
            answers.append(json.loads(response.read()))
            sockets.add(id(line.sock))
        assert len(sockets) == 1  # the server kept the connection open
        assert answers[0]["score"] == answers[2]["score"]
        expected = library_prediction(app.store / FIXTURE_MODEL, app.data / "defect" / "d000.png", "openvino")
        assert answers[1]["label"] == expected.label_text
        assert answers[1]["score"] == pytest.approx(expected.score, abs=SCORE_TOL)
    finally:
        line.close()


def test_predict_multipart_a_threshold_and_a_false_alarm_rate(app, http):
    image = app.data / "good" / "000.png"
    model_dir = app.store / FIXTURE_MODEL
    expected = library_prediction(model_dir, image, "openvino")
    files = {"image": ("000.png", image.read_bytes(), "image/png")}
    body = http.post(url(app, "/predict"), params={"model": FIXTURE_MODEL}, files=files).json()
    assert body["file"] == "000.png" and body["score"] == pytest.approx(expected.score, abs=SCORE_TOL)
    assert "mask_png" not in body and "regions" not in body

    low = http.post(url(app, "/predict"), params={"model": FIXTURE_MODEL, "threshold": 0.0}, files=files).json()
    assert low["threshold"] == 0.0 and low["label"] == ("anomalous" if expected.score > 0 else "normal")

    from iadbe.inference import load_model

    moved = load_model(model_dir, backend="openvino").predict(image, false_alarm_rate=0.2)[0]
    rated = http.post(url(app, "/predict"), params={"model": FIXTURE_MODEL, "false_alarm_rate": 0.2},
                      files=files).json()
    assert rated["score"] == pytest.approx(moved.score, abs=SCORE_TOL)


def test_batch_reports_each_file_and_refuses_too_many(app, http):
    good = app.data / "good" / "001.png"
    files = [("images", ("a.png", good.read_bytes(), "image/png")),
             ("images", ("broken.png", b"\x89PNG\r\n\x1a\nnope", "image/png")),
             ("images", ("b.png", defect_image(app), "image/png"))]
    response = http.post(url(app, "/predict/batch"), params={"model": FIXTURE_MODEL, "mask": "polygons"}, files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["file"] for item in body["results"]] == ["a.png", "broken.png", "b.png"]
    assert body["results"][1]["error"]["code"] == "bad_image"
    assert "truncated or corrupt" in body["results"][1]["error"]["message"]
    expected = library_prediction(app.store / FIXTURE_MODEL, good, "openvino")
    assert body["results"][0]["score"] == pytest.approx(expected.score, abs=SCORE_TOL)
    assert body["count"] == 3 and "regions" in body["results"][2]

    only_bad = [("images", ("x.png", b"not an image", "image/png"))]
    assert_error(http.post(url(app, "/predict/batch"), params={"model": FIXTURE_MODEL}, files=only_bad), 400,
                 "bad_image", "no image could be read")
    too_many = [("images", (f"{i}.png", b"x", "image/png")) for i in range(65)]
    assert_error(http.post(url(app, "/predict/batch"), params={"model": FIXTURE_MODEL}, files=too_many), 413,
                 "too_large", "at most 64")


def test_errors_are_json_with_status_codes_that_say_what_went_wrong(app, http):
    image = defect_image(app)
    predict = url(app, "/predict")
    assert_error(http.post(predict, params={"model": "no-such-model"}, data=image), 404, "unknown_model",
                 "GET /api/v1/models")
    assert_error(http.post(predict, params={"model": str(app.store.parent)}, data=image), 404, "unknown_model")
    assert_error(http.post(predict, data=image), 400, "bad_setting", "model")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL, "threshold": 1.5}, data=image), 400,
                 "bad_setting", "threshold")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL, "threshold": "abc"}, data=image), 400,
                 "bad_setting", "threshold")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL, "false_alarm_rate": 2}, data=image), 400,
                 "bad_setting")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL, "mask": "svg"}, data=image), 400, "bad_setting")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL, "backend": "tpu"}, data=image), 400,
                 "bad_setting")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL}, data=b"garbage",
                           headers={"Content-Type": "application/octet-stream"}), 400, "bad_image", "not an image")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL}, data=image[: len(image) // 2]), 400,
                 "bad_image", "truncated or corrupt")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL}, data=b""), 400, "bad_request", "empty")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL}, json={"image": "x"}), 415,
                 "unsupported_media_type")
    assert_error(http.post(predict, params={"model": FIXTURE_MODEL}, files={"note": (None, "text only")}), 400,
                 "bad_request", "no file")
    assert_error(declared_upload(app, 600 * 1024**2), 413, "too_large", "limit")  # refused before it is sent
    # the app keeps serving, with the same answer as before
    assert http.post(predict, params={"model": FIXTURE_MODEL}, data=image).status_code == 200
    assert app.process.poll() is None


def declared_upload(app, length: int):
    """A POST that announces ``length`` bytes and sends one (requests would correct the header)."""
    import http.client
    import json
    from urllib.parse import urlparse

    where = urlparse(app.url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    connection.putrequest("POST", f"/api/v1/predict?model={FIXTURE_MODEL}")
    connection.putheader("Content-Length", str(length))
    connection.endheaders(b"x")
    answer = connection.getresponse()

    class Response:
        status_code = answer.status
        text = answer.read().decode()

        def json(self):  # noqa: ANN201
            return json.loads(self.text)

    connection.close()
    return Response()


def test_models_route_lists_the_catalogue_without_server_paths(app, http):
    response = http.get(url(app, "/models"))
    assert response.status_code == 200
    rows = response.json()["models"]
    row = next(row for row in rows if row["id"] == FIXTURE_MODEL)
    assert row["detector"] == "padim" and row["source"] == "local"
    assert str(app.store) not in response.text


def test_openapi_describes_the_routes(app, http):
    schema = http.get(app.url.rstrip("/") + "/openapi.json").json()
    assert set(schema["paths"]) == {"/api/v1/predict", "/api/v1/predict/batch", "/api/v1/models"}
    predict = schema["paths"]["/api/v1/predict"]["post"]
    assert {"image/*", "multipart/form-data"} <= set(predict["requestBody"]["content"])
    assert {p["name"] for p in predict["parameters"]} >= {"model", "threshold", "false_alarm_rate", "mask"}
    assert {"404", "413", "503"} <= set(predict["responses"])
    assert http.get(url(app, "/docs")).status_code == 200


# --------------------------------------------------------------------------- limits, without a server
def test_gate_refuses_at_once_when_the_waiting_room_is_full():
    from iadbe.app.rest import APIError, Gate

    async def scenario() -> list[str]:
        gate, release, outcomes = Gate(running=1, waiting=1), asyncio.Event(), []

        async def request(tag: str) -> None:
            try:
                async with gate.slot():
                    outcomes.append(f"{tag} ran")
                    await release.wait()
            except APIError as error:
                outcomes.append(f"{tag} {error.code} {error.status}")

        first = asyncio.create_task(request("a"))
        await asyncio.sleep(0)
        second = asyncio.create_task(request("b"))  # waits
        await asyncio.sleep(0)
        await request("c")  # one running, one waiting: refused at once
        release.set()
        await asyncio.gather(first, second)
        return outcomes

    assert asyncio.run(scenario()) == ["a ran", "c busy 503", "b ran"]


def test_a_body_without_length_is_cut_at_the_limit():
    from iadbe.app.rest import APIError, read_body

    chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": True} for _ in range(10)]
    taken = []

    async def receive() -> dict:
        taken.append(1)
        return chunks[len(taken) - 1]

    with pytest.raises(APIError) as caught:
        asyncio.run(read_body(receive, None, limit=1000))
    assert caught.value.status == 413 and len(taken) == 3  # stopped reading at the chunk that passed the limit


# --------------------------------------------------------------------------- shared mode: visitors apart
def test_shared_mode_routes_reach_shared_models_only(app, tmp_path, hub_server):
    """In shared mode an anonymous REST caller sees the server's models, never a visitor's workspace model,
    even by its id or its folder path."""
    home, store = tmp_path / "home", tmp_path / "home" / "models"
    shutil.copytree(app.store / FIXTURE_MODEL, store / FIXTURE_MODEL)
    private = home / "workspaces" / "s-0123456789abcdef0123456789abcdef" / "models" / "visitor-model"
    shutil.copytree(app.store / FIXTURE_MODEL, private)
    server = start_app(home, store, app.data, hub_server.url, IADBE_SHARED_MODE="1",
                       IADBE_WORKSPACES=str(home / "workspaces"))
    try:
        base = server.url.rstrip("/") + "/api/v1"
        ids = [row["id"] for row in requests.get(base + "/models").json()["models"]]
        assert FIXTURE_MODEL in ids and "visitor-model" not in ids
        image = defect_image(app)
        assert requests.post(base + "/predict", params={"model": FIXTURE_MODEL}, data=image).status_code == 200
        for ref in ("visitor-model", str(private)):
            assert_error(requests.post(base + "/predict", params={"model": ref}, data=image), 404, "unknown_model")
    finally:
        server.stop()


def test_the_caller_is_the_signed_in_account_of_the_session_cookie_or_nobody(tmp_path, monkeypatch):
    """Shared mode: the account Gradio's OAuth put in the signed session (unexpired) owns the request; without
    one the caller has no workspace (shared models only). Single-user mode: the local user."""
    import time as clock
    from types import SimpleNamespace

    from iadbe import constants
    from iadbe.app.rest import caller_workspace

    monkeypatch.setattr(constants, "WORKSPACES_DIR", tmp_path / "workspaces")
    monkeypatch.setattr(constants, "SHARED_MODE", True)

    def request(session: dict | None) -> SimpleNamespace:
        return SimpleNamespace(scope={} if session is None else {"session": session})

    signed_in = {"oauth_info": {"userinfo": {"preferred_username": "alice"}, "expires_at": clock.time() + 600}}
    workspace = caller_workspace(request(signed_in))
    assert workspace.visitor.key == "hf-alice" and workspace.private
    expired = {"oauth_info": {"userinfo": {"preferred_username": "alice"}, "expires_at": clock.time() - 1}}
    assert caller_workspace(request(expired)) is None
    assert caller_workspace(request({})) is None and caller_workspace(request(None)) is None
    monkeypatch.setattr(constants, "SHARED_MODE", False)
    assert caller_workspace(request(None)).visitor.kind == "local"
