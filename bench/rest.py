"""REST latency against the engine's own, side by side in one run (issue 17's target: at most 1.3x).

    python bench/rest.py [--runs 20]

The real app (``python app.py``) serves a PaDiM and a PatchCore model at 256 px; a client on the same
machine sends the image's bytes to ``POST /api/v1/predict`` over loopback with a kept-alive connection
(``requests.Session``), and the engine (``LoadedModel.predict`` on the same image file, same backend
choice "auto") runs in this process. Both sides are interleaved in rounds, so both see the same load.
The server's own time (``server_ms``: body read, queue, prediction, JSON) is printed beside them.
"""

from __future__ import annotations

import argparse
import statistics

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
    try:
        url = app.url.rstrip("/") + "/api/v1/predict"
        with requests.Session() as http:
            for name, model_dir in models.items():
                engine = load_model(model_dir)
                server_ms: list[float] = []

                def through_rest() -> None:
                    response = http.post(url, params={"model": name}, data=data,
                                         headers={"Content-Type": "image/png"})
                    response.raise_for_status()
                    server_ms.append(response.json()["server_ms"])

                def through_engine() -> None:
                    engine.predict(image)

                for _ in range(3):
                    through_rest()
                    through_engine()
                server_ms.clear()
                rest_ms, engine_ms = [], []
                for _ in range(max(1, runs // 5)):
                    rest_ms.append(median_ms(through_rest, 5))
                    engine_ms.append(median_ms(through_engine, 5))
                rest_t, engine_t = statistics.median(rest_ms), statistics.median(engine_ms)
                ratio = rest_t / engine_t
                rows.append((f"REST /api/v1/predict over loopback ({name})",
                             f"{rest_t:.1f} ms vs engine {engine_t:.1f} ms (server {statistics.median(server_ms):.1f})",
                             f"{TARGET}x engine", ratio, ratio <= TARGET))
    finally:
        app.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    for target, measured, reference, ratio, passed in measure(args.runs):
        print(f"{target:<50} {measured:<48} {reference:<12} {ratio:6.2f}  {'PASS' if passed else 'FAIL'}")


if __name__ == "__main__":
    main()
