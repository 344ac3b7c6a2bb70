"""``build_app()``: the Gradio Blocks of IADBE, assembled from one module per tab.

API endpoints (``gradio_client``), all with stable names: ``/predict``, ``/rerender``, ``/predict_batch``,
``/compare``, ``/predict_video``, ``/cancel_video``, ``/live`` (camera frames), ``/inspect``, ``/train``, ``/cancel``, ``/push``, ``/models``, ``/models_all``, ``/benchmark``,
``/benchmark_results``, ``/benchmark_result``, ``/leaderboard``, ``/leaderboard_export``, ``/refresh_models``,
``/status`` (the demo model's build), ``/delete_model``, ``/delete_data`` and ``/workspace``. Plain HTTP routes
beside them: ``iadbe/app/rest.py`` (``/api/v1/...``).

In shared mode (a public Space) every handler that lists or uses models asks ``common.visitor_workspace``
whose request it is: the visitor sees the shared models plus their own. A "Sign in with Hugging Face"
button is offered when the Space has OAuth (``hf_oauth: true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from iadbe.app import benchmark_tab, inference_tab, live_tab, models_tab, startup, training_data, training_tab
from iadbe import constants
from iadbe.app.common import DEMO_LABEL, dropdown_update, logger, user_errors, visitor_workspace

INTRO = f"""\
# IADBE: industrial anomaly detection
Upload a picture of a part: the model marks where it differs from the good parts it was trained on.
Scores are calibrated on validation data, so **0.5 is the decision threshold of every model**.
Models labelled **{DEMO_LABEL}** were trained on a texture photograph with painted-on defects: they show
how the app works, their numbers say nothing about real parts.
"""


def _examples() -> list[Path]:
    from iadbe.demo import demo_examples

    try:
        return demo_examples()
    except Exception:  # noqa: BLE001 - no examples is better than no app (read-only home, ...)
        logger.exception("cannot prepare the demo example images")
        return []


@user_errors
def refresh_models(model: Any, compare_models: Any, push_model: Any, own_model: Any = None,
                   request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> tuple:
    """``/refresh_models``: fresh choices for the model dropdowns (values kept when still there): the models
    the visitor may use, and for publishing and deleting, their own."""
    workspace = visitor_workspace(request, profile)
    return (dropdown_update(model, workspace=workspace),
            dropdown_update(compare_models, multiselect=True, workspace=workspace),
            dropdown_update(push_model, local_only=True, workspace=workspace),
            dropdown_update(own_model, local_only=True, workspace=workspace))


@user_errors
def poll_status(model: Any, compare_models: Any, push_model: Any, own_model: Any = None,
                request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> tuple:
    """``/status``: the background setup's status; when it is done, stop polling and refresh the lists."""
    if startup.STATUS.busy:
        return (startup.STATUS.markdown(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
    return (startup.STATUS.markdown(), gr.Timer(active=False),
            *refresh_models(model, compare_models, push_model, own_model, request, profile))


def offers_login() -> bool:
    """Show "Sign in with Hugging Face": shared mode on a Space with OAuth, or Gradio's mock login for a
    developer who asked for it (``IADBE_MOCK_LOGIN``; it signs everyone in as the server's account)."""
    return constants.SHARED_MODE and (constants.OAUTH_CONFIGURED or constants.MOCK_LOGIN)


@user_errors
def training_choices(model: Any, backbone: Any) -> tuple:
    """The detectors and backbones that run here (the first call imports torch: after the page is up); the
    supervised detectors only once an inspected dataset has labelled defects (``training_data.offer_models``)."""
    models = training_data.model_choices_for(labelled=False)
    backbones = list(startup.available_backbones())
    names = {value for _, value in models}
    return (gr.update(choices=models, value=model if model in names else (models[0][1] if models else None)),
            gr.update(choices=backbones, value=backbone if backbone in backbones else
                      ("tf_efficientnet_lite0" if "tf_efficientnet_lite0" in backbones else None)))


def build_app() -> gr.Blocks:
    """The whole app, not launched (``launch()`` adds the queue and the server settings)."""
    examples = _examples()
    with gr.Blocks(title="IADBE", analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown(INTRO)
        if offers_login():
            gr.LoginButton(elem_id="login")
        status = gr.Markdown(startup.STATUS.markdown(), label="status")
        timer = gr.Timer(2.0, active=startup.STATUS.busy)
        with gr.Tab("Inference"):
            inference = inference_tab.build(examples)
        with gr.Tab("Live"):
            live_tab.build(inference["model"], inference["backend"], inference["threshold"], inference["opacity"])
        with gr.Tab("Training"):
            training = training_tab.build()
        with gr.Tab("Models"):
            models = models_tab.build()
        with gr.Tab("Benchmark"):
            benchmark = benchmark_tab.build()

        dropdowns = [inference["model"], inference["compare_models"], training["push_model"], training["own_model"]]
        inference["refresh"].click(refresh_models, dropdowns, dropdowns, api_name="refresh_models")
        training["job"].then(refresh_models, dropdowns, dropdowns, api_visibility="private")
        training["deleted"].then(refresh_models, dropdowns, dropdowns, api_visibility="private")
        timer.tick(poll_status, dropdowns, [status, timer, *dropdowns], api_visibility="private",
                   show_progress="hidden")
        gr.api(startup.describe, api_name="status")
        demo.load(lambda: (startup.STATUS.markdown(), gr.Timer(active=startup.STATUS.busy)), None, [status, timer],
                  api_visibility="private", show_progress="hidden")
        demo.load(refresh_models, dropdowns, dropdowns, api_visibility="private", show_progress="hidden")
        demo.load(training_tab.workspace_status, None, training["own_status"], api_name="workspace",
                  show_progress="hidden")
        demo.load(training_choices, [training["model"], training["backbone"]],
                  [training["model"], training["backbone"]], api_visibility="private", show_progress="hidden")
        demo.load(models_tab.catalog_rows, None, models["catalog"], api_visibility="private", show_progress="hidden")
        demo.load(models_tab.cached_detector_rows, None, models["detectors"], api_visibility="private",
                  show_progress="hidden")
        benchmark_tab.on_load(demo, benchmark)
    return demo
