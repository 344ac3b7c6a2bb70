"""REST latency against the engine's own, side by side in one run (issue 17's target: at most 1.3x).

    python bench/rest.py [--runs 20]

The real app (``python app.py``) serves a PaDiM and a PatchCore model at 256 px; a client on the same
machine sends the image's bytes to ``POST /api/v1/predict`` over loopback on a kept-alive connection and
parses the JSON answer, and the engine (``LoadedModel.predict`` on the same image file, same backend
choice "auto") runs in this process. The server's own time (``server_ms``: body read, queue, prediction,
JSON) is printed beside them.

Two clients, interleaved in rounds with the engine so that all three see the same load:
- Python's own ``http.client`` (the row held to the 1.3x target): one request, one answer, as a line
  controller's HTTP code (libcurl, a PLC's client, a few lines of C#) costs;
- ``requests.Session`` (information): ``requests`` spends about 1 ms of its own Python per call on these
  2 cores (preparing the request, urllib3's pool, hooks), a client's choice that the server cannot change.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
from urllib.parse import urlencode, urlsplit

from _app import start_app
from _models import bench_images, trained_model
from _timing import median_ms

TARGET = 1.3


def measure(runs: int = 20) -> list[tuple[str, str, str, float, bool | None]]:
    """Rows of (target, measured, reference, ratio, passed) for bench/run_all.py."""
    import requests

    from iadbe.inference import load_model

    models = {"bench-padim": trained_model("padim"), "bench-patchcore": trained_model("patchcore")}
    image = bench_images(1)[0]
    data = image.read_bytes()
    app = start_app(models, timeout_s=300)  # a loaded machine starts the app slowly (120 s was too short)
    rows = []
    address = urlsplit(app.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    try:
        url = app.url.rstrip("/") + "/api/v1/predict"
        with requests.Session() as session:
            for name, model_dir in models.items():
                engine = load_model(model_dir)
                server_ms: list[float] = []

                def through_http_client() -> None:
                    connection.request("POST", f"/api/v1/predict?{urlencode({'model': name})}", body=data,
                                       headers={"Content-Type": "image/png"})
                    response = connection.getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{response.status}: {body[:300]!r}")
                    server_ms.append(json.loads(body)["server_ms"])

                def through_requests() -> None:
                    response = session.post(url, params={"model": name}, data=data,
                                            headers={"Content-Type": "image/png"})
                    response.raise_for_status()
                    response.json()

                def through_engine() -> None:
                    engine.predict(image)

                for _ in range(3):
                    through_http_client()
                    through_requests()
                    through_engine()
                server_ms.clear()
                lean_ms, requests_ms, engine_ms = [], [], []
                for _ in range(max(1, runs // 5)):
                    lean_ms.append(median_ms(through_http_client, 5))
                    requests_ms.append(median_ms(through_requests, 5))
                    engine_ms.append(median_ms(through_engine, 5))
                lean_t, requests_t = statistics.median(lean_ms), statistics.median(requests_ms)
                engine_t = statistics.median(engine_ms)
                rows.append((f"REST /api/v1/predict over loopback ({name})",
                             f"{lean_t:.1f} ms vs engine {engine_t:.1f} ms (server {statistics.median(server_ms):.1f})",
                             f"{TARGET}x engine", lean_t / engine_t, lean_t / engine_t <= TARGET))
                rows.append((f"  the same through requests.Session ({name})",
                             f"{requests_t:.1f} ms (requests' own cost {requests_t - lean_t:+.1f} ms)",
                             "(information)", requests_t / engine_t, None))
    finally:
        connection.close()
        app.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    for target, measured, reference, ratio, passed in measure(args.runs):
        verdict = "info" if passed is None else "PASS" if passed else "FAIL"
        print(f"{target:<50} {measured:<48} {reference:<14} {ratio:6.2f}  {verdict}")


if __name__ == "__main__":
    main()
