"""Models tab: the catalogue (manifest + local store) and every detector of the study with whether it runs here."""

from __future__ import annotations

from typing import Any

import gradio as gr

from iadbe.app.common import DEMO_LABEL, user_errors, visible_catalog, visitor_workspace

CATALOG_HEADERS = ["id", "model", "dataset", "backbone", "source", "cached", "image AUROC", "pixel AUROC",
                   "note", "location"]
DETECTOR_HEADERS = ["model", "name", "in study", "runs here", "backbone", "note"]


def _percent(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return round(100 * value, 2) if isinstance(value, (int, float)) else None


@user_errors
def catalog_rows(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> list[list[Any]]:
    """``/models``: one row per model the visitor may use (the shared ones and their own; single-user mode:
    the same as ``iadbe models``)."""
    from iadbe.demo import is_demo

    return [[e.id, e.display_name, f"{e.dataset or '-'}/{e.category or '-'}", e.backbone or "-", e.source,
             "yes" if e.cached else "no", _percent(e.metrics, "image_AUROC"), _percent(e.metrics, "pixel_AUROC"),
             DEMO_LABEL if is_demo(e.id) else "", e.location]
            for e in visible_catalog(visitor_workspace(request, profile))]


@user_errors
def detector_rows() -> list[list[Any]]:
    """``/models_all``: every detector of the study and whether it runs here (``iadbe models --all``), checked now."""
    from iadbe.app import startup

    startup.availability.cache_clear()
    return cached_detector_rows()


@user_errors
def cached_detector_rows() -> list[list[Any]]:
    """The detector table as last checked (the first page load after start waits for the check)."""
    from iadbe.app import startup
    from iadbe.models import get_spec

    rows = []
    for row in startup.availability():
        spec = get_spec(row.model)
        rows.append([spec.display_name, row.model, "yes" if spec.in_study else "no", "yes" if row.runs_here else "no",
                     row.backbone or "-", row.reason])
    return rows


def build() -> dict[str, Any]:
    """The Models tab's components (inside an open ``gr.Tab``)."""
    refresh = gr.Button("Refresh")
    catalog = gr.Dataframe(headers=CATALOG_HEADERS, label="catalogue (manifest models and the local store)",
                           interactive=False, wrap=True)
    gr.Markdown("Every detector of the study, and whether it can be trained on this machine "
                "(`iadbe models --all`):")
    detectors = gr.Dataframe(headers=DETECTOR_HEADERS, label="detectors", interactive=False, wrap=True)
    refresh.click(catalog_rows, None, catalog, api_name="models").then(
        detector_rows, None, detectors, api_name="models_all")
    return {"catalog": catalog, "detectors": detectors, "refresh": refresh}
