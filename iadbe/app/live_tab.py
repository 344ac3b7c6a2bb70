"""Live tab: the browser's camera streamed frame by frame through a model (``/live``).

Each frame comes back with its heatmap, the outline of the region shown for its decision and a banner
(score, label), drawn by ``iadbe.render.frame_overlay``, the picture a video file gets. The event runs
without a concurrency limit so that frames are never parked in Gradio's queue; instead each visitor's
stream has an ``iadbe.video.LiveCounter``: a frame arriving while that visitor's previous one is still being
scored is dropped at once and counted, and the tab shows the count.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import gradio as gr

from iadbe.app.common import resolve_model, user_errors, visitor_workspace

#: Frames are drawn at most this large on their long side (the model sees the full frame).
LIVE_MAX_SIDE = 640
#: Streams remembered (one counter per browser session; the oldest are forgotten first).
MAX_STREAMS = 256
STREAM_EVERY_S = 0.1

_COUNTERS: OrderedDict[str, Any] = OrderedDict()
_LOCK = threading.Lock()


def counter_for(request: Any) -> Any:
    """The stream counter of this browser session (created on its first frame)."""
    from iadbe.video import LiveCounter

    key = str(getattr(request, "session_hash", None) or "default")
    with _LOCK:
        counter = _COUNTERS.get(key)
        if counter is None:
            counter = _COUNTERS[key] = LiveCounter()
            while len(_COUNTERS) > MAX_STREAMS:
                _COUNTERS.popitem(last=False)
        _COUNTERS.move_to_end(key)
        return counter


@user_errors
def live_frame(frame: Any, model_id: Any, backend: str, threshold: float, opacity: float,
               request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> tuple:
    """``/live``: (annotated frame, "score label", stream status); a dropped frame changes only the status."""
    from iadbe.app.inference_tab import for_display
    from iadbe.app.startup import import_heavy_libraries
    from iadbe.inference import load_model
    from iadbe.inference.predictor import check_threshold
    from iadbe.render import frame_overlay

    if frame is None:
        return gr.skip(), gr.skip(), gr.skip()
    counter = counter_for(request)
    with counter.frame() as taken:
        if not taken:
            return gr.skip(), gr.skip(), counter.status()
        threshold = check_threshold(threshold)
        location = resolve_model(model_id, visitor_workspace(request, profile))
        import_heavy_libraries()
        model = load_model(location, backend=str(backend or "auto"))
        prediction = model.predict(frame, threshold=threshold, names=["camera"])[0]
        picture = frame_overlay(for_display(prediction, LIVE_MAX_SIDE), opacity)
    return picture, f"{prediction.score:.3f} {prediction.label_text}", counter.status()


def build(model: Any, backend: Any, threshold: Any, opacity: Any) -> None:
    """The Live tab's components (inside an open ``gr.Tab``); the model and settings are the Inference tab's."""
    gr.Markdown("Point the camera at a part: each frame is scored by the model picked in the Inference tab "
                "(with its backend, threshold and opacity). Frames that arrive while one is being scored are "
                "dropped, not queued, so the picture keeps up with the line.")
    with gr.Row():
        camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="camera", elem_id="camera")
        annotated = gr.Image(label="inspected", interactive=False, format="jpeg", elem_id="live-annotated")
    with gr.Row():
        decision = gr.Textbox(label="score and label", elem_id="live-decision")
        status = gr.Textbox(label="stream", elem_id="live-status")
    camera.stream(live_frame, [camera, model, backend, threshold, opacity], [annotated, decision, status],
                  stream_every=STREAM_EVERY_S, time_limit=None, concurrency_limit=None, show_progress="hidden",
                  api_name="live")
