"""Calling the app from scripts: a ``gradio_client.Client`` without two per-call costs of gradio_client 2.x.

TLS state: gradio_client 2.x sends every request (upload, queue join, result stream, one download per output
file) through a fresh ``httpx`` client, and each fresh client loads the CA bundle: 17 ms per request
on this 2-core machine, 7 requests per ``/predict``, so about 120 ms of a 250 ms call went into
certificate loading, even for ``http://``. Passing one ready ``ssl.SSLContext`` as ``ssl_verify``
(gradio_client hands it to httpx as ``verify``) keeps certificate verification and drops that cost.

Result polling: while it waits for a result, gradio_client checks the queue of messages its SSE reader
thread has received and sleeps 50 ms whenever it is empty (``gradio_client.utils.stream_sse_v1plus``;
the sleep came with gradio PR #7091 so that waiting would not spin a core). A 10 ms prediction then
waits until the next 50 ms tick: a no-op endpoint took 81 ms through ``Client.predict`` and 8 ms through
the same HTTP requests made directly. :func:`connect` caps the sleeps of that module at
``POLL_INTERVAL_S`` (2 ms: a few hundred wake-ups a second while a call is waiting, well under 1 % of a
core). It is process-wide for gradio_client and stays in place once a client was made with it.

    >>> from iadbe.app.client import connect
    >>> client = connect("http://127.0.0.1:7860/")  # doctest: +SKIP
"""

from __future__ import annotations

import ssl
import time
from functools import lru_cache
from typing import Any

POLL_INTERVAL_S = 0.002


@lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context (system CA store and certifi's, as httpx uses) for every request."""
    context = ssl.create_default_context()
    try:
        import certifi

        context.load_verify_locations(certifi.where())
    except (ImportError, OSError):
        pass
    return context


class _ShortSleeps:
    """The ``time`` module as ``gradio_client.utils`` sees it after :func:`poll_results_faster`: the same
    functions, with sleeps capped at ``POLL_INTERVAL_S``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, POLL_INTERVAL_S))


def poll_results_faster() -> None:
    """Make gradio_client look for a call's result every ``POLL_INTERVAL_S`` instead of every 50 ms."""
    from gradio_client import utils

    if not isinstance(utils.time, _ShortSleeps):
        utils.time = _ShortSleeps()


def connect(url: str, **kwargs: Any) -> Any:
    """``gradio_client.Client(url, **kwargs)`` with the shared TLS context (unless ``ssl_verify`` is given)
    and results picked up as they arrive (:func:`poll_results_faster`)."""
    from gradio_client import Client

    poll_results_faster()
    kwargs.setdefault("ssl_verify", shared_ssl_context())
    kwargs.setdefault("verbose", False)
    return Client(url, **kwargs)
