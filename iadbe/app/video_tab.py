"""Video tab (inside the Inference tab): a video file in, ``iadbe.video.predict_video`` out.

Shows the annotated H.264 video, the score timeline with the threshold line, the flagged frames and a zip
(scores.csv, timeline.png, flagged/). Long videos show their progress and can be cancelled: Gradio's
``cancels=`` ends the event for the browser, and a flag for the visitor's session makes the library's
progress callback raise at the next batch, so the worker thread stops too and the partial video is removed.
"""

from __future__ import annotations

import threading
import zipfile
from typing import Any

import gradio as gr

from iadbe.app.common import (
    fail,
    file_path,
    rate_from_percent,
    request_dir,
    resolve_model,
    user_errors,
    visitor_workspace,
)

#: Flagged frames shown in the gallery (all of them are in the zip).
GALLERY_MAX = 48
VIDEO_TYPES = [".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".y4m"]

_CANCELLED: dict[str, threading.Event] = {}
_LOCK = threading.Lock()


class VideoCancelled(Exception):
    """Raised from the progress callback when the visitor pressed Cancel."""


def _key(request: Any) -> str:
    return str(getattr(request, "session_hash", None) or "default")


def _flag(request: Any) -> threading.Event:
    with _LOCK:
        return _CANCELLED.setdefault(_key(request), threading.Event())


@user_errors
def predict_video(video: Any, model_id: Any, backend: str, threshold: float, opacity: float,
                  false_alarm_percent: Any = None, request: gr.Request = None,
                  profile: gr.OAuthProfile | None = None,
                  progress: Any = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's idiom
    """``/predict_video``: (annotated video, timeline, flagged frames, zip, summary)."""
    from iadbe.app.startup import import_heavy_libraries
    from iadbe.inference import load_model
    from iadbe.inference.predictor import check_threshold
    from iadbe.video import predict_video as run

    path = file_path(video)
    if not path:
        raise fail("Upload a video first (mp4, mov, avi, mkv, webm...).")
    threshold = check_threshold(threshold)
    location = resolve_model(model_id, visitor_workspace(request, profile))
    import_heavy_libraries()
    model = load_model(location, backend=str(backend or "auto"))
    rate = rate_from_percent(false_alarm_percent)
    cancelled = _flag(request)
    cancelled.clear()

    def report(fraction: float, message: str) -> None:
        if cancelled.is_set():
            raise VideoCancelled
        if progress is not None:
            progress(fraction, desc=message)

    out = request_dir("video")
    try:
        result = run(model, path, out, threshold=threshold, false_alarm_rate=rate, opacity=opacity, progress=report)
    except VideoCancelled:
        raise fail("Cancelled: the video was not finished and nothing was kept.", title="Cancelled") from None
    finally:
        with _LOCK:
            _CANCELLED.pop(_key(request), None)  # one flag per session with a video running, not per visitor ever
    archive = out / "video_results.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for item in (result.csv, result.timeline, *result.flagged):
            bundle.write(item, item.relative_to(out).as_posix())
    gallery = [(str(p), p.stem.replace("_", " ")) for p in result.flagged[:GALLERY_MAX]]
    summary = (f"**{result.frames} frames, {result.anomalous} anomalous** (threshold {result.threshold:g}) on "
               f"{model.backend_name} ({model.device}): {result.frames_per_s:.1f} frames/s end to end")
    summary += "".join(f"\n\n_{note}_" for note in result.notes)
    return str(result.video), str(result.timeline), gallery, str(archive), summary


def cancel_video(request: gr.Request) -> str:
    """``/cancel_video``: stop this session's video at its next batch."""
    _flag(request).set()
    return "Cancelling: the video stops at its next batch."


def build(model: Any, backend: Any, threshold: Any, opacity: Any, false_alarms: Any) -> None:
    """The Video sub-tab's components and events (inside an open ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=1):
            video = gr.File(label="video (mp4, mov, avi, mkv, webm...)", file_types=VIDEO_TYPES, type="filepath",
                            elem_id="input-video")
            with gr.Row():
                run = gr.Button("Inspect video", variant="primary", elem_id="inspect-video")
                stop = gr.Button("Cancel", variant="stop")
            summary = gr.Markdown(elem_id="video-summary")
        with gr.Column(scale=2):
            annotated = gr.Video(label="annotated video", interactive=False, elem_id="annotated-video")
            timeline = gr.Image(label="score per frame", interactive=False, elem_id="timeline")
    with gr.Row():
        flagged = gr.Gallery(label=f"flagged frames (first {GALLERY_MAX})", columns=6, height=300)
        archive = gr.File(label="zip (scores.csv, timeline.png, flagged/)", interactive=False)
    job = run.click(predict_video, [video, model, backend, threshold, opacity, false_alarms],
                    [annotated, timeline, flagged, archive, summary], api_name="predict_video",
                    concurrency_limit=1, concurrency_id="video")
    stop.click(cancel_video, None, summary, cancels=[job], api_name="cancel_video", concurrency_limit=None,
               concurrency_id="cancel_video")
