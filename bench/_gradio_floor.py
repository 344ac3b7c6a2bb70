"""Gradio's own cost for a call shaped like the app's ``/predict``, with no model and no drawing.

    python bench/_gradio_floor.py PORT IMAGE [--gradio-defaults]

Serves one event, ``/predict``, with the same inputs (an image file, model, backend, threshold, opacity)
and outputs (four views, score, label, run info, details, state) as the Inference tab, the same
``preprocess=False``, and a handler that only hands back four ready-made views of IMAGE, encoded as
the app encodes its views, from Gradio's cache folder (where the app writes them). ``bench/app.py``
times it through the same client as the real app: what a ``/predict`` costs before IADBE does any work.
Its server runs with the app's Gradio settings (event statistics and the monitoring page off,
``iadbe.app.server.skip_event_statistics``), so what those save shows in the app's total, not as IADBE's
share beating the floor; ``--gradio-defaults`` serves it as Gradio does out of the box (the floor the
issue measured), for comparison.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # iadbe without an installed package


def ready_views(image: str) -> list[str]:
    """Four copies of ``image`` saved as the app saves its views, in Gradio's cache folder."""
    from iadbe.images import load_image
    from iadbe.render import save_views

    rgb = load_image(image, "image")
    paths = save_views({f"copy{index}": rgb for index in range(4)}, Path(get_upload_folder()) / "floor-views",
                       "view", fmt="jpeg")
    return [str(path) for path in paths.values()]


def build(views: list[str]) -> gr.Blocks:
    def predict(image, model, backend, threshold, opacity):
        return (*views, 0.5, "good", "none", {"score": 0.5}, None)

    with gr.Blocks() as demo:
        inputs = [gr.Image(type="filepath"), gr.Dropdown(["m"], allow_custom_value=True),
                  gr.Radio(["auto"]), gr.Slider(0, 1), gr.Slider(0, 1)]
        outputs = [*(gr.Image(format="jpeg") for _ in range(4)), gr.Number(), gr.Textbox(), gr.Textbox(),
                   gr.JSON(), gr.State()]
        gr.Button().click(predict, inputs, outputs, api_name="predict", preprocess=False)
    return demo


def serve(image: str, port: int, gradio_defaults: bool = False) -> gr.Blocks:
    """The floor app on ``port`` (not blocking): at IADBE's Gradio settings, as the app's server launches,
    or ``gradio_defaults``."""
    from iadbe.app.server import skip_event_statistics

    demo = build(ready_views(image)).queue()
    if not gradio_defaults:
        skip_event_statistics(demo)  # as the app's server does: the floor is Gradio at IADBE's settings
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True,
                enable_monitoring=None if gradio_defaults else False)
    return demo


def main() -> None:
    serve(sys.argv[2], int(sys.argv[1]), gradio_defaults="--gradio-defaults" in sys.argv[3:])
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
