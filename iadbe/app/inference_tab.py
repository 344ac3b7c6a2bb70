"""Inference tab: one image, a batch of images, and several models side by side.

Handlers call ``load_model(...).predict(...)`` and ``render_prediction(...)``; the last prediction is kept
in ``gr.State`` so the threshold and opacity sliders re-draw the pictures without running the model again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from iadbe import constants
from iadbe.app.common import (
    DISPLAY_MAX_SIDE,
    MAX_BATCH_FILES,
    default_model,
    fail,
    rate_from_percent,
    file_path,
    model_choices,
    original_name,
    request_dir,
    resolve_model,
    uploaded_path,
    user_errors,
    view_dir,
    visitor_workspace,
)

BACKENDS = list(constants.BACKENDS)


# --------------------------------------------------------------------------- helpers
def _load(model_id: Any, backend: str, workspace: Any = None) -> Any:
    """The model, if the visitor may use it (shared models and their own: ``common.resolve_model``)."""
    from iadbe.app.startup import import_heavy_libraries
    from iadbe.inference import load_model

    import_heavy_libraries()
    return load_model(resolve_model(model_id, workspace), backend=str(backend or "auto"))


def for_display(prediction: Any, max_side: int = DISPLAY_MAX_SIDE) -> Any:
    """The prediction with its image and map shrunk to ``max_side`` (score and label unchanged)."""
    import cv2

    height, width = prediction.image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return prediction
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = cv2.resize(prediction.image, size, interpolation=cv2.INTER_AREA)
    amap = prediction.anomaly_map
    if amap is not None:
        amap = cv2.resize(amap, size, interpolation=cv2.INTER_LINEAR)
    boxes = tuple(box.scaled(size[0] / width, size[1] / height) for box in prediction.boxes)
    return dataclasses.replace(prediction, image=image, anomaly_map=amap, boxes=boxes)


def _run_info(prediction: Any) -> str:
    ms = sum(prediction.timings_ms.values())
    return f"{prediction.backend} on {prediction.device}, {ms:.1f} ms (model {prediction.timings_ms['model']:.1f} ms)"


def _details(prediction: Any, model: Any, original_size: tuple[int, int]) -> dict[str, Any]:
    from iadbe.demo import is_demo

    meta = model.meta
    return {
        **prediction.summary(),
        "model_id": model.model_dir.name,
        "model": model.name,
        "demo": is_demo(model.name) or is_demo(model.model_dir.name),
        "detector": meta.get("model"),
        "backbone": meta.get("backbone"),
        "model_image_size": meta.get("image_size"),
        "image_size": [original_size[0], original_size[1]],
        "dataset": (meta.get("dataset") or {}).get("name"),
        "among_good_parts": among_good_parts(prediction.normal_percentile),
        "calibration": {key: (meta.get("calibration") or {}).get(key) for key in
                        ("rule", "false_alarm_rate", "pixel_false_alarm_rate", "defect_share",
                         "validation_false_alarm_rate")},
        "test_metrics": meta.get("metrics"),
        **prediction.box_details(),  # a box detector's boxes above the threshold, in image pixels
    }


def among_good_parts(percentile: float | None) -> str:
    """Where a score sits among the validation's good parts, in words."""
    if percentile is None:
        return "unknown (the model was calibrated before good-part scores were recorded)"
    if percentile >= 100.0:
        return "above every good part of the validation set"
    return f"higher than {percentile:.0f} % of the validation set's good parts"


def _check_threshold(threshold: Any) -> float:
    from iadbe.inference.predictor import check_threshold

    return check_threshold(threshold)


# --------------------------------------------------------------------------- single image
@user_errors
def predict(image: Any, model_id: Any, backend: str, threshold: float, opacity: float,
            false_alarm_percent: Any = None, request: gr.Request = None,
            profile: gr.OAuthProfile | None = None) -> tuple:
    """``/predict``: (original, heatmap, mask, contours, score, label, run info, details, state).

    ``false_alarm_percent``: the share of good parts (%) that may be flagged, read off the model's
    validation normals; 0 or empty = the model's calibrated point. The threshold slider applies on top."""
    from iadbe.render import render_prediction

    path = uploaded_path(image)
    if not path:
        raise fail("Upload an image first (or click one of the examples).")
    threshold = _check_threshold(threshold)
    model = _load(model_id, backend, visitor_workspace(request, profile))
    rate = rate_from_percent(false_alarm_percent)  # 0: the calibrated point
    prediction = model.predict(path, threshold=threshold, names=[original_name(image)], false_alarm_rate=rate)[0]
    shown = for_display(prediction)
    views = render_prediction(shown, opacity, with_panel=False)
    files = _view_files(views, ("original", "heatmap", "mask", "contours"))
    details = _details(prediction, model, prediction.image.shape[:2])
    return (*files, round(prediction.score, 6), prediction.label_text, _run_info(prediction), details,
            {"prediction": shown, "details": details})


def _view_files(views: dict, kinds: tuple[str, ...]) -> list[str]:
    """The views as JPEG files (``save_views``' display format) in a fresh request folder: handing Gradio
    numpy arrays made it spend ~120 ms per /predict encoding four PNGs (bench/app.py).

    Views equal to one already written share its file: a good part's mask and contours views are its
    original picture, and on a line most parts are good (two of four encodings saved, issue 17)."""
    from iadbe.render import save_views

    first = {kind: next(other for other in kinds if np.array_equal(views[other], views[kind])) for kind in kinds}
    unique = [kind for kind in kinds if first[kind] == kind]
    paths = save_views({kind: views[kind] for kind in unique}, view_dir(), "view", fmt="jpeg")
    return [str(paths[first[kind]]) for kind in kinds]


@user_errors
def rerender(state: Any, threshold: float, opacity: float) -> tuple:
    """``/rerender``: the last prediction drawn with a new threshold / opacity (the model does not run)."""
    from iadbe.render import render_prediction

    if not state:
        return (gr.skip(),) * 5
    threshold = _check_threshold(threshold)
    prediction = state["prediction"]
    views = render_prediction(prediction, opacity, threshold, with_panel=False)
    label = prediction.with_threshold(threshold).label_text
    details = {**state["details"], "threshold": threshold, "label": label}
    if prediction.boxes:  # boxes in the original image's pixels, as /predict gave them
        original = state["details"]["image_size"]
        scale = original[0] / prediction.image.shape[0]
        shown = prediction.with_threshold(threshold)
        details["boxes"] = [box.scaled(scale, scale).to_dict() for box in shown.shown_boxes]
    return (*_view_files(views, ("heatmap", "mask", "contours")), label, details)


# --------------------------------------------------------------------------- batch
@user_errors
def predict_batch(files: Any, model_id: Any, backend: str, threshold: float, opacity: float,
                  request: gr.Request = None, profile: gr.OAuthProfile | None = None,
                  progress: Any = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's idiom
    """``/predict_batch``: (gallery, table rows, zip path, summary); the files are the library's
    (:func:`iadbe.inference.batch.predict_to_files`, the same as ``iadbe predict`` writes)."""
    from iadbe.inference.batch import predict_to_files

    paths = [file_path(f) for f in (files or []) if file_path(f)]
    if not paths:
        raise fail("Upload one or more images.")
    if len(paths) > MAX_BATCH_FILES:
        raise fail(f"{len(paths)} files: at most {MAX_BATCH_FILES} per batch.")
    threshold = _check_threshold(threshold)
    model = _load(model_id, backend, visitor_workspace(request, profile))
    names = [original_name(value, Path(path).name) for value, path in zip(files, paths, strict=True)]

    def report(done: int, total: int, name: str) -> None:
        if progress is not None:
            progress((done, total), desc=name)

    result = predict_to_files(model, paths, request_dir("batch"), names=names, threshold=threshold,
                              opacity=opacity, batch_size=1, progress=report)
    failed = [row["error"] for row in result.failures]
    if not result.predictions:
        raise fail("No image could be read: " + "; ".join(failed[:5]))
    if failed:
        gr.Warning(f"{len(failed)} file(s) skipped: " + "; ".join(failed[:3]))
    gallery = list(zip(_display_heatmaps(result.predictions, opacity),
                       [f"{p.name}: {p.label_text} ({p.score:.3f})" for p in result.predictions], strict=True))
    table = [[row["file"], row.get("score"), row.get("label", "error"), row.get("ms"), row["error"]]
             for row in result.rows]
    summary = (f"{len(result.predictions)} images on {model.backend_name} ({model.device}); "
               f"{result.anomalous} anomalous" + (f"; {len(failed)} skipped" if failed else ""))
    return gallery, table, str(result.archive), summary


BATCH_HEADERS = ["file", "score", "label", "ms", "error"]


def _display_heatmaps(predictions: list[Any], opacity: float) -> list[str]:
    """The gallery's pictures: each heatmap drawn at display size as JPEG (the zip keeps the full-size PNGs)."""
    from iadbe.render import render_prediction, save_views

    folder = view_dir()
    return [str(save_views({"heatmap": render_prediction(for_display(p), opacity, with_panel=False)["heatmap"]},
                           folder, f"{index:04d}", fmt="jpeg")["heatmap"]) for index, p in enumerate(predictions)]


# --------------------------------------------------------------------------- compare
@user_errors
def compare(image: Any, model_ids: Any, backend: str, threshold: float, opacity: float, request: gr.Request = None,
            profile: gr.OAuthProfile | None = None) -> tuple:
    """``/compare``: (gallery of one panel per model, table rows)."""
    from iadbe.render import render_prediction

    path = uploaded_path(image)
    if not path:
        raise fail("Upload an image first.")
    ids = [m for m in (model_ids or []) if m] if isinstance(model_ids, (list, tuple)) else [model_ids]
    if len(ids) < 2:
        raise fail("Pick at least two models to compare.")
    threshold = _check_threshold(threshold)
    workspace = visitor_workspace(request, profile)
    for model_id in ids:
        resolve_model(model_id, workspace)  # every model is checked before any runs
    gallery, rows = [], []
    for model_id in ids:
        model = _load(model_id, backend, workspace)
        prediction = model.predict(path, threshold=threshold, names=[original_name(image)])[0]
        views = render_prediction(for_display(prediction, DISPLAY_MAX_SIDE // 2), opacity)
        caption = f"{model_id}: {prediction.label_text} ({prediction.score:.3f}), {_run_info(prediction)}"
        gallery.append((views["panel"], caption))
        rows.append([str(model_id), round(prediction.score, 6), prediction.label_text, prediction.backend,
                     round(sum(prediction.timings_ms.values()), 2)])
    return gallery, rows


# --------------------------------------------------------------------------- UI
def build(examples: list[Path]) -> dict[str, Any]:
    """The Inference tab's components (inside an open ``gr.Tab``); returns the model dropdowns."""
    choices = model_choices()
    with gr.Row():
        model = gr.Dropdown(choices=choices, value=default_model(choices), label="model",
                            allow_custom_value=True, scale=4)
        backend = gr.Radio(BACKENDS, value="auto", label="backend", scale=2)
        refresh = gr.Button("↻ models", scale=0, min_width=90)
    with gr.Row():
        threshold = gr.Slider(0, 1, value=0.5, step=0.01, label="threshold (0.5 = calibrated)")
        opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="heatmap opacity")
        false_alarms = gr.Number(value=0, minimum=0, maximum=50, label="false alarms accepted on good parts (%) "
                                 "(0 = the model's calibrated point)")
    state = gr.State(None)
    with gr.Tab("Single image"):
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="filepath", label="image", sources=["upload", "clipboard"], height=320,
                                 elem_id="input-image")
                run = gr.Button("Detect", variant="primary", elem_id="detect")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image], label="examples (demo texture)",
                                elem_id="examples")
            with gr.Column(scale=2):
                with gr.Row():
                    score = gr.Number(label="score", precision=4, elem_id="score")
                    label = gr.Textbox(label="label", elem_id="label")
                    info = gr.Textbox(label="run (backend, device, latency)", scale=2)
                with gr.Row():
                    original = gr.Image(label="original", format="jpeg", interactive=False, elem_id="original")
                    heatmap = gr.Image(label="heatmap", format="jpeg", interactive=False, elem_id="heatmap")
                with gr.Row():
                    mask = gr.Image(label="mask", format="jpeg", interactive=False, elem_id="mask")
                    contours = gr.Image(label="contours", format="jpeg", interactive=False)
                details = gr.JSON(label="details")
        run.click(predict, [image, model, backend, threshold, opacity, false_alarms],
                  [original, heatmap, mask, contours, score, label, info, details, state],
                  api_name="predict", preprocess=False)
        gr.on([threshold.change, opacity.change], rerender, [state, threshold, opacity],
              [heatmap, mask, contours, label, details], api_name="rerender", trigger_mode="always_last",
              show_progress="hidden")
    with gr.Tab("Batch"):
        files = gr.File(file_count="multiple", label=f"images (up to {MAX_BATCH_FILES})", type="filepath")
        run_batch = gr.Button("Detect all", variant="primary")
        batch_summary = gr.Markdown(label="summary")
        with gr.Row():
            gallery = gr.Gallery(label="heatmaps", columns=4, height=420)
            with gr.Column():
                table = gr.Dataframe(headers=BATCH_HEADERS, label="results", interactive=False)
                archive = gr.File(label="zip (overlays, masks, predictions.csv)", interactive=False)
        run_batch.click(predict_batch, [files, model, backend, threshold, opacity],
                        [gallery, table, archive, batch_summary], api_name="predict_batch",
                        concurrency_limit=1, concurrency_id="batch")
    with gr.Tab("Compare"):
        with gr.Row():
            compare_models = gr.Dropdown(choices=choices, multiselect=True, label="models (2 or more)",
                                         allow_custom_value=True, scale=3)
            compare_image = gr.Image(type="filepath", label="image", height=240, scale=2)
        run_compare = gr.Button("Compare", variant="primary")
        compare_gallery = gr.Gallery(label="one panel per model", columns=1, height="auto")
        compare_table = gr.Dataframe(headers=["model", "score", "label", "backend", "ms"], label="scores",
                                     interactive=False)
        run_compare.click(compare, [compare_image, compare_models, backend, threshold, opacity],
                          [compare_gallery, compare_table], api_name="compare", preprocess=False,
                          concurrency_limit=1, concurrency_id="batch")
    with gr.Tab("Video"):
        from iadbe.app import video_tab

        video_tab.build(model, backend, threshold, opacity, false_alarms)
    return {"model": model, "compare_models": compare_models, "refresh": refresh, "backend": backend,
            "threshold": threshold, "opacity": opacity}

