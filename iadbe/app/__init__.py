"""The Gradio app: a thin layer over the library (inference and model catalogue)."""

from __future__ import annotations

import os
from typing import Any

from iadbe import constants


def _catalog_choices() -> list[tuple[str, str]]:
    from iadbe.catalog import build_catalog

    return [(entry.label(), entry.location) for entry in build_catalog()]


def _predict(image_path: str | None, model_ref: str | None, backend: str, threshold: float, opacity: float) -> Any:
    import gradio as gr

    from iadbe.errors import IADBEError
    from iadbe.inference import load_model
    from iadbe.render import render_prediction

    if not image_path:
        raise gr.Error("upload an image first")
    if not model_ref:
        raise gr.Error("pick a model (train one with `iadbe train ...` if the list is empty)")
    try:
        prediction = load_model(model_ref, backend=backend).predict(image_path, threshold=threshold)[0]
        views = render_prediction(prediction, opacity)
    except IADBEError as error:
        raise gr.Error(str(error)) from None
    details = prediction.summary()
    return views["heatmap"], views["mask"], views["contours"], prediction.score, prediction.label_text, details


def build_app() -> Any:
    import gradio as gr

    with gr.Blocks(title="IADBE") as demo:
        gr.Markdown("# IADBE: industrial anomaly detection\nScores are calibrated: 0.5 is the threshold.")
        with gr.Tab("Inference"):
            with gr.Row():
                model = gr.Dropdown(choices=_catalog_choices(), label="model")
                backend = gr.Radio(["auto", "torch", "openvino"], value="auto", label="backend")
            image = gr.Image(type="filepath", label="image")
            threshold = gr.Slider(0, 1, value=0.5, step=0.01, label="threshold")
            opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="heatmap opacity")
            run = gr.Button("Detect", variant="primary")
            with gr.Row():
                heatmap, mask, contours = gr.Image(label="heatmap"), gr.Image(label="mask"), gr.Image(label="contours")
            with gr.Row():
                score, label = gr.Number(label="score"), gr.Textbox(label="label")
            details = gr.JSON(label="details (backend, device, latency)")
            run.click(_predict, [image, model, backend, threshold, opacity],
                      [heatmap, mask, contours, score, label, details], api_name="predict")
        with gr.Tab("Models"):
            refresh = gr.Button("Refresh")
            table = gr.JSON(label="catalogue")
            refresh.click(lambda: [entry.__dict__ for entry in __import__("iadbe.catalog").catalog.build_catalog()],
                          None, table, api_name="models")
    return demo


def launch(host: str | None = None, port: int | None = None) -> None:
    demo = build_app()
    demo.queue(default_concurrency_limit=2).launch(
        server_name=host or os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        server_port=port or int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860),
        max_file_size="50mb", allowed_paths=[str(constants.IADBE_HOME)],
    )
