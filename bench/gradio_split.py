"""Where a ``/predict`` through gradio_client spends its time inside the server: the app beside Gradio's floor.

    python bench/gradio_split.py [--calls 100]

Serves ``bench/_gradio_floor.py``'s no-op app and then the real app (``iadbe.app.launch``), each in a fresh
process with its own home, with timers around Gradio's ``Blocks.process_api`` (and its ``preprocess_data``,
``call_function``, ``postprocess_data``) and ``file_fetch`` (the view downloads), and in the app around
the handler's own steps (upload check, model lookup, engine, drawing, view files, details). Prints ms per
call for each, and beside each synchronous step the CPU time of the thread that ran it (``[cpu]``): where the
two agree the step is working, not waiting (session 12: the handler's short steps cost ~3x the CPU of a
benchmark's hot loop, cold caches, not waits for the GIL). The client is another process, as a real caller
is. Compare the two servers' rows with each other, and ``bench/app.py`` for the figures judged against
targets.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _app import free_port  # noqa: E402

TIMES: dict[str, list[float]] = collections.defaultdict(list)


def timed(owner: Any, name: str, key: str) -> None:
    """Replace ``owner.name`` by a wrapper adding its wall time to ``TIMES[key]`` (coroutines too) and, for a
    plain function, its thread's CPU time to ``TIMES[key + " [cpu]"]``."""
    import inspect

    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):
        async def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                TIMES[key].append(time.perf_counter() - began)
    else:
        def wrapper(*args, **kwargs):
            began, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                TIMES[key].append(time.perf_counter() - began)
                TIMES[f"{key} [cpu]"].append(time.thread_time() - cpu)
    setattr(owner, name, wrapper)


def time_gradio() -> None:
    import gradio.blocks
    import gradio.routes

    for name, key in (("process_api", "process_api"), ("preprocess_data", "  preprocess"),
                      ("call_function", "  call_function"), ("postprocess_data", "  postprocess")):
        timed(gradio.blocks.Blocks, name, key)
    timed(gradio.routes, "file_fetch", "file_fetch (4 per call)")


def time_handler() -> None:
    import iadbe.app.inference_tab as tab
    import iadbe.inference.predictor as predictor

    timed(tab, "uploaded_path", "    upload check")
    timed(tab, "_load", "    model lookup")
    timed(predictor.LoadedModel, "predict", "    engine")
    import iadbe.render as render

    timed(render, "render_prediction", "    drawing")  # imported inside the handler: patched at its source
    timed(tab, "_view_files", "    view files")
    timed(tab, "_details", "    details")


def serve_app(model_dir: Path) -> str:
    """The real app on a free port, ``model_dir`` in its store (this process's ``IADBE_MODEL_STORE``)."""
    from iadbe import constants
    from iadbe.app import launch

    shutil.copytree(model_dir, constants.MODEL_STORE / "bench-padim")
    port = free_port()
    launch("127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"


def serve_floor(image: str) -> str:
    import _gradio_floor

    port = free_port()
    _gradio_floor.serve(image, port)
    return f"http://127.0.0.1:{port}/"


CLIENT = """
import sys, time
sys.path.insert(0, {root!r})
from gradio_client import handle_file
from iadbe.app.client import connect
client = connect({url!r})
def call():
    client.predict(handle_file({image!r}), "bench-padim", "auto", 0.5, 0.5, api_name="/predict")
for _ in range(10):
    call()
print("warm", flush=True)
sys.stdin.readline()
began = time.perf_counter()
for _ in range({calls}):
    call()
print((time.perf_counter() - began) / {calls} * 1000, flush=True)
"""


def measure(url: str, image: str, calls: int) -> float:
    """ms per /predict through gradio_client in another process (as a real caller); TIMES holds only these
    calls."""
    root = str(Path(__file__).resolve().parents[1])
    code = CLIENT.format(root=root, url=url, image=image, calls=calls)
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as client:
        assert client.stdout.readline().strip() == "warm"
        TIMES.clear()
        client.stdin.write("go\n")
        client.stdin.flush()
        return float(client.stdout.readline())


def report(label: str, total_ms: float, calls: int) -> None:
    print(f"{label}: {total_ms:.1f} ms per call")
    for key, values in list(TIMES.items()):  # a late server thread may still add a key
        median_ms = statistics.median(values) * 1000
        print(f"  {key:<26} {sum(values) / calls * 1000:6.2f} ms per call (median {median_ms:.2f} ms"
              f" over {len(values)})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--serve", choices=("app", "floor"), help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        time_gradio()
        time_handler()
        url = serve_app(args.model_dir) if args.serve == "app" else serve_floor(args.image)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the app's launch logs every request at INFO
        label = "IADBE's app, PaDiM" if args.serve == "app" else "Gradio's floor (no-op handler, IADBE's settings)"
        report(label, measure(url, args.image, args.calls), args.calls)
        sys.stdout.flush()
        os._exit(0)  # the server's threads do not stop on their own
    from _models import bench_images, trained_model

    image, model_dir = str(bench_images(1)[0]), trained_model("padim")
    for side in ("floor", "app"):  # each in a fresh process with its own home, as the app would start
        home = Path(tempfile.mkdtemp(prefix="iadbe-gradio-split-"))
        env = {**os.environ, "IADBE_HOME": str(home), "IADBE_MODEL_STORE": str(home / "models"),
               "GRADIO_TEMP_DIR": str(home / "gradio_tmp"), "HF_HUB_OFFLINE": "1",
               "GRADIO_ANALYTICS_ENABLED": "False"}
        try:
            subprocess.run([sys.executable, __file__, "--serve", side, "--calls", str(args.calls), "--model-dir",
                            str(model_dir), "--image", image], env=env, check=True)
        finally:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
