"""Training tab: inspect a dataset, train a detector (one job at a time, cancellable), publish it.

Training is ``iadbe.training.train(...)``. It writes the model directory in a staging folder and renames it
into the store only at the very end, so a cancelled or crashed run leaves nothing behind; this module
writes nothing else before the run has succeeded.

Ownership (``iadbe.workspaces``): in shared mode an upload is extracted into the visitor's workspace and
a model is trained into it, after the quota checks; only its owner lists, pushes or deletes it. Trainings
wait in one queue (one running at a time, one per visitor), the waiting ones told their place.

Publishing a model and the visitor's own models and data are :mod:`iadbe.app.publish`'s, the dataset side
(uploads, ``/inspect``, which detectors are offered for the data) :mod:`iadbe.app.training_data`'s (wired in here).

Cancelling: Gradio's ``cancels=`` stops the event, but a function already running in a worker thread
keeps running. So the Cancel button also sets a flag for the user's session, and the progress callback
given to ``train`` raises :class:`TrainingCancelled` at its next call (every training batch, validation
and test chunk); training stops there and the staging folder is removed.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from iadbe.calibration import DEFAULT_FALSE_ALARM_RATE
from iadbe.model_card import epochs_summary
from iadbe.charts import CONFUSION_HEADERS, confusion_rows
from iadbe.app.common import (
    fail,
    minutes_cap,
    model_choices,
    rate_from_percent,
    request_dir,
    user_errors,
    visitor_workspace,
)
from iadbe.app.publish import delete_data, delete_model, push, push_note, workspace_status
from iadbe.app.training_data import (  # noqa: F401 - end_session: server.py's unload handler, imported from here
    OFFER_HINT,
    dataset_root,
    end_session,
    inspect_dataset,
    offer_models,
    reset_offer,
)
from iadbe.workspaces import TrainingQueue

METRIC_HEADERS = ["metric", "value (%)"]
GALLERY_IMAGES = 4

TRAINING_QUEUE = TrainingQueue()  # one training at a time in this process (also after a cancel), one per visitor
#: Training requests Gradio runs at once: one trains, the others wait in TRAINING_QUEUE and show their place.
TRAINING_WAITERS = 4
_FLAGS: dict[str, threading.Event] = {}
_FLAGS_LOCK = threading.Lock()


class TrainingCancelled(Exception):
    """Raised from the progress callback when the user pressed Cancel."""


def _session(request: gr.Request | None) -> str:
    return str(getattr(request, "session_hash", None) or "default")


# --------------------------------------------------------------------------- train
def _whole(value: Any, what: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise fail(f"{what} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise fail(f"{what} must be a whole number, got {value!r}")
    return int(number)


def _image_size(value: Any) -> int:
    """Empty -> 256; anything else goes to the library as is (it names the accepted range)."""
    return 256 if value in (None, "") else _whole(value, "image size")


def _number(value: Any, what: str) -> int | None:
    """0 or empty -> None (the library's default); else a positive integer."""
    if value in (None, ""):
        return None
    number = _whole(value, what)
    if number < 0:
        raise fail(f"{what} must be 0 (default) or positive, got {number}")
    return number or None


@user_errors
def train_model(dataset_zip: Any, dataset_path: Any, category: Any, model: Any, backbone: Any, image_size: Any,
                max_epochs: Any, max_train_images: Any, name: Any, max_train_minutes: Any = None,
                false_alarm_percent: Any = None, request: gr.Request = None,
                profile: gr.OAuthProfile | None = None,
                progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
    """``/train``: (status, metrics rows, dataset report, test images with heatmaps, result, validation score
    histogram, test confusion rows). ``false_alarm_percent``: the share of good parts (in %) the threshold
    may flag; 0 or empty = the library's default rule. ``max_train_minutes``: empty = the detector's
    interactive cap (:func:`default_time_cap`), 0 = none (the study's epochs)."""
    from iadbe.app.startup import import_heavy_libraries
    from iadbe.store import check_writable
    from iadbe.training import train

    import_heavy_libraries()
    size = _image_size(image_size)
    epochs, limit = _number(max_epochs, "max epochs"), _number(max_train_images, "max train images")
    rate = rate_from_percent(false_alarm_percent)  # 0: the default rule
    detector = str(model or "").strip()
    if not detector:
        raise fail("Pick a model to train.")
    time_cap = minutes_cap(max_train_minutes, default=default_time_cap(detector))
    workspace = visitor_workspace(request, profile)
    model_name = str(name or "").strip() or None
    out = _workspace_target(workspace, detector, model_name)
    if out is None:  # the shared store: a read-only or full store is reported first, not after training
        check_writable()
    root = dataset_root(dataset_zip, dataset_path, request, workspace)  # an upload over the quota stops here
    if out is not None:  # a visitor's workspace is made only once the upload is within the quota
        check_writable(out.parent)
    key, flag = _session(request), threading.Event()
    place = workspace.visitor.key if workspace.private else key  # single-user mode: every tab may queue
    with TRAINING_QUEUE.place(place) as ticket:  # QuotaError: this visitor already has one queued or running
        with _FLAGS_LOCK:
            _FLAGS[key] = flag
        try:
            def waiting(ahead: int) -> None:
                if flag.is_set():
                    raise TrainingCancelled
                progress(0.0, desc=f"queued: {ahead} training(s) ahead of yours")

            progress(0.0, desc="waiting for the previous training to finish")
            ticket.wait(waiting)
            if flag.is_set():
                raise TrainingCancelled

            def report(fraction: float, message: str) -> None:
                if flag.is_set() and fraction < 1.0:
                    raise TrainingCancelled
                progress(min(max(fraction, 0.0), 1.0), desc=message)

            result = train(detector, "folder", root, category=str(category or "").strip() or None,
                           backbone=str(backbone or "").strip() or None, image_size=size, max_epochs=epochs,
                           max_train_images=limit, max_train_minutes=time_cap,
                           name=out.name if out else model_name, out=out, progress=report,
                           false_alarm_rate=rate)
        except TrainingCancelled:
            raise fail("Training cancelled: nothing was written to the model store.", title="Cancelled") from None
        finally:
            with _FLAGS_LOCK:
                if _FLAGS.get(key) is flag:
                    del _FLAGS[key]
    rows = [[metric, round(100 * value, 2) if math.isfinite(value) else None]
            for metric, value in result.metrics.items()]
    epochs_trained = result.meta.get("epochs_trained")
    summary = {"model_id": result.model_dir.name, "model_dir": str(result.model_dir), "metrics": result.metrics,
               "training_time_s": round(result.training_time_s, 2), "epochs_trained": epochs_trained}
    epochs = epochs_summary(result.meta)
    fit = f"fit: {epochs}" if epochs else "fit"
    status = (f"Trained **{result.model_dir.name}** in {result.training_time_s:.1f} s ({fit}); "
              "it is now in the model lists.")
    if epochs and "cap" in epochs:
        status += " Set the time cap to 0 to train the study's epochs."
    return (status, rows, result.dataset_report, _test_gallery(result), summary, _histogram(result),
            confusion_rows(result.meta.get("test_counts") or {}))


def default_time_cap(detector: str) -> float | None:
    """The detector's interactive training cap in minutes (None: none, or an unknown name, which training
    reports itself)."""
    from iadbe.errors import SettingsError
    from iadbe.models import get_spec

    try:
        return get_spec(detector).interactive_time_cap
    except SettingsError:
        return None


def time_cap_hint(detector: Any) -> tuple[Any, str]:
    """(the time-cap field's value, a line under it) for the chosen detector."""
    from iadbe.errors import SettingsError
    from iadbe.models import get_spec

    try:
        spec = get_spec(str(detector or ""))
    except SettingsError:
        return None, ""
    cap = spec.interactive_time_cap
    if cap is None:
        return None, f"{spec.display_name} fits in one pass over the good images: no time cap needed."
    whose = "the study trains" if spec.in_study else "it trains up to"
    return cap, (f"{spec.display_name}: {whose} {spec.max_epochs} epochs, hours on a CPU; this Space stops "
                 f"after {cap:g} minutes by default and records how many epochs it got. "
                 "Set 0 for the full epochs.")


def _histogram(result: Any) -> Any:
    """The validation score histogram with the threshold line, or None (older calibration, no scores)."""
    from iadbe.charts import validation_histogram

    try:
        return validation_histogram(result.meta)
    except (ValueError, KeyError):
        return None


def _workspace_target(workspace: Any, detector: str, name: str | None) -> Path | None:
    """Where a visitor's model goes in shared mode (None: the store, as the library chooses), after the quota
    and name checks."""
    from iadbe.store import safe_name

    if not workspace.private:
        return None
    workspace.check_model_slot()  # QuotaError: too many models or too much disk
    folder = safe_name(name or f"{detector}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (workspace.models_dir / folder).exists():
        raise fail(f"You already have a model named {folder!r}: choose another name or delete that one first.")
    return workspace.models_dir / folder


def _test_gallery(result: Any) -> list[tuple[str, str]]:
    """A few test images (anomalous first) predicted by the new model, as heatmap panels."""
    from iadbe.app.inference_tab import for_display
    from iadbe.inference import load_model
    from iadbe.render import render_prediction, save_views

    outputs = result.test_outputs
    if outputs is None or not outputs.paths:
        return []
    order = sorted(range(len(outputs.paths)), key=lambda i: -int(outputs.labels[i]))
    anomalous = [i for i in order if outputs.labels[i]][: GALLERY_IMAGES - 1]
    normal = [i for i in order if not outputs.labels[i]][: GALLERY_IMAGES - len(anomalous)]
    picks = [outputs.paths[i] for i in anomalous + normal]
    try:
        predictions = load_model(result.model_dir).predict(picks)
    except Exception:  # noqa: BLE001 - the model is stored; the pictures are a bonus
        return []
    out = request_dir("train")
    gallery = []
    for index, prediction in enumerate(predictions):
        views = render_prediction(for_display(prediction, 512))
        saved = save_views({"panel": views["panel"]}, out, f"{index:02d}_{Path(prediction.name).stem}")
        caption = f"{prediction.name}: {prediction.label_text} ({prediction.score:.3f})"
        if prediction.boxes:  # a box detector (YOLO): the panel's contours view draws the boxes above the threshold
            caption += f", {len(prediction.shown_boxes)} of {len(prediction.boxes)} boxes drawn"
        gallery.append((str(saved["panel"]), caption))
    return gallery


@user_errors
def cancel_training(request: gr.Request) -> str:
    """``/cancel``: stop this session's training at its next progress step."""
    with _FLAGS_LOCK:
        flag = _FLAGS.get(_session(request))
    if flag is None:
        return "No training of yours is running."
    flag.set()
    return "Cancelling: the run stops at its next step; nothing is written to the model store."


# --------------------------------------------------------------------------- UI
def build() -> dict[str, Any]:
    """The Training tab's components (inside an open ``gr.Tab``); returns components ``ui`` wires further."""
    from iadbe.app.startup import all_detectors

    with gr.Row():
        with gr.Column():
            dataset_zip = gr.File(label="dataset zip (good/ + defect/ [+ masks/], MVTec, YOLO ...)",
                                  file_types=[".zip"], type="filepath", elem_id="dataset-zip")
            dataset_path = gr.Textbox(label="... or a folder on the server, or hf://datasets/OWNER/NAME")
            category = gr.Textbox(label="category (only when the dataset holds several)")
            inspect = gr.Button("Inspect")
        report = gr.Textbox(label="dataset report", lines=14, max_lines=30)
    with gr.Row():
        model = gr.Dropdown(choices=all_detectors(supervised=False), value="padim", label="model (runs here)",
                            allow_custom_value=True, elem_id="train-model")
        backbone = gr.Dropdown(choices=["tf_efficientnet_lite0"], value="tf_efficientnet_lite0",
                               label="backbone", allow_custom_value=True)
        image_size = gr.Slider(64, 512, value=256, step=32, label="image size")
    with gr.Row():
        max_epochs = gr.Number(value=0, precision=0, label="max epochs (0 = model default)")
        max_train = gr.Number(value=0, precision=0, label="max train images (0 = all)")
        max_minutes = gr.Number(value=None, minimum=0, elem_id="max-minutes",
                                label="max training minutes (the model's cap is filled in; 0 = the study's epochs)")
        name = gr.Textbox(label="model name (optional)")
        default_rate = f"{100 * DEFAULT_FALSE_ALARM_RATE:g}"
        # 0, not empty: a browser sends an empty gr.Number as 0 (Gradio 6)
        false_alarms = gr.Number(value=0, minimum=0, maximum=50,
                                 label=f"false alarms accepted on good parts (%; 0 = {default_rate}, or the best "
                                       "F1 on labelled defects outside the test split)")
    offer_note = gr.Markdown(OFFER_HINT, elem_id="offer-note")
    cap_note = gr.Markdown(time_cap_hint("padim")[1], elem_id="time-cap-note")
    with gr.Row():
        start = gr.Button("Train", variant="primary")
        stop = gr.Button("Cancel", variant="stop")
    status = gr.Markdown(label="status")
    with gr.Row():
        metrics = gr.Dataframe(headers=METRIC_HEADERS, label="test metrics", interactive=False)
        samples = gr.Gallery(label="test images with heatmaps (YOLO: boxes)", columns=2, height=420)
    with gr.Row():
        histogram = gr.Image(label="validation scores: good parts, anomalies and the threshold", type="numpy",
                             interactive=False, elem_id="val-histogram")
        confusion = gr.Dataframe(headers=list(CONFUSION_HEADERS), label="test images at the calibrated threshold",
                                 interactive=False)
    result = gr.JSON(label="result", visible=False)
    with gr.Accordion("Publish a model to the Hugging Face Hub", open=False):
        with gr.Row():
            push_model_id = gr.Dropdown(choices=model_choices(local_only=True), label="your model",
                                        allow_custom_value=True)
            repo_id = gr.Textbox(label="repo id (OWNER/NAME)")
            path_in_repo = gr.Textbox(label="folder in the repo (optional)")
        with gr.Row():
            private = gr.Checkbox(label="private (when the repo is created)")
            token = gr.Textbox(label="token", type="password",
                               placeholder="hf_... (or sign in with Hugging Face); never stored or shown")
            push_button = gr.Button("Push")
        gr.Markdown(push_note())
        push_status = gr.Markdown(label="push result")
    with gr.Accordion("Your models and data", open=False):
        own_status = gr.Markdown()
        with gr.Row():
            own_model = gr.Dropdown(choices=model_choices(local_only=True), label="your model",
                                    allow_custom_value=True)
            delete_button = gr.Button("Delete model", variant="stop")
            delete_data_button = gr.Button("Delete my uploaded data", variant="stop")
        own_result = gr.Markdown()

    model.change(time_cap_hint, model, [max_minutes, cap_note], api_visibility="private", show_progress="hidden")
    inspected = inspect.click(inspect_dataset, [dataset_zip, dataset_path, category], report, api_name="inspect",
                              concurrency_limit=1, concurrency_id="inspect")
    inspected.success(offer_models, [dataset_zip, dataset_path, category, model], [model, offer_note],
                      api_visibility="private", show_progress="hidden", concurrency_limit=1, concurrency_id="inspect")
    gr.on([dataset_zip.change, dataset_path.input, category.input], reset_offer, model, [model, offer_note],
          api_visibility="private", show_progress="hidden")
    job = start.click(train_model, [dataset_zip, dataset_path, category, model, backbone, image_size, max_epochs,
                                    max_train, name, max_minutes, false_alarms],
                      [status, metrics, report, samples, result, histogram, confusion],
                      api_name="train", concurrency_limit=TRAINING_WAITERS, concurrency_id="train")
    stop.click(cancel_training, None, status, cancels=[job], api_name="cancel", concurrency_limit=None,
               concurrency_id="cancel")
    push_button.click(push, [push_model_id, repo_id, private, token, path_in_repo], [push_status, token],
                      api_name="push", concurrency_limit=1, concurrency_id="push")
    deleted = delete_button.click(delete_model, own_model, own_result, api_name="delete_model")
    cleared = delete_data_button.click(delete_data, None, own_result, api_name="delete_data")
    for event in (deleted, cleared, job):
        event.then(workspace_status, None, own_status, api_visibility="private", show_progress="hidden")
    return {"job": job, "model": model, "backbone": backbone, "push_model": push_model_id, "own_model": own_model,
            "own_status": own_status, "deleted": deleted}
