"""The Gradio app: a thin layer over the library.

``import iadbe.app`` is instant (no gradio, no torch): the tabs are imported by :func:`build_app`.

    >>> from iadbe.app import launch
    >>> launch()  # doctest: +SKIP  (http://0.0.0.0:7860)
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "launch"]


def build_app() -> Any:
    """The ``gr.Blocks`` of the app (tabs Inference, Training, Models, Benchmark), not launched."""
    from iadbe.app.ui import build_app as _build

    return _build()


def launch(host: str | None = None, port: int | None = None, **kwargs: Any) -> Any:
    """Serve the app on ``host:port`` (default 0.0.0.0:7860; ``PORT`` / ``GRADIO_SERVER_PORT`` /
    ``GRADIO_SERVER_NAME`` respected). Keyword arguments go to :func:`iadbe.app.server.launch`."""
    from iadbe.app.server import launch as _launch

    return _launch(host, port, **kwargs)
