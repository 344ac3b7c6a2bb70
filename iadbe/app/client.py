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
the same HTTP requests made directly. :func:`connect` gives the client it returns (and only that one:
nothing in gradio_client changes, other clients in the process keep their behaviour) message queues
that wake the waiting thread when a message arrives: the empty-queue check waits on a condition for up
to ``WAKE_WAIT_S`` before gradio_client's 50 ms sleep, so a result is picked up as it arrives, with no
busy polling.

    >>> from iadbe.app.client import connect
    >>> client = connect("http://127.0.0.1:7860/")  # doctest: +SKIP
"""

from __future__ import annotations

import ssl
import threading
from collections import deque
from functools import lru_cache
from typing import Any

#: How long the empty-queue check of a waiting call blocks for a message before gradio_client's own 50 ms
#: sleep; only the thread waiting for that call's result blocks.
WAKE_WAIT_S = 5.0


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


class _WakingDeque(deque):
    """A message queue whose emptiness check waits (up to ``WAKE_WAIT_S``) for the next message.

    gradio_client's waiting loop is ``if len(queue) > 0: pop; else: sleep 50 ms``; only that loop asks
    for the length, and the reader thread only appends.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._arrived = threading.Condition()

    def append(self, item: Any) -> None:
        with self._arrived:
            super().append(item)
            self._arrived.notify_all()

    def __len__(self) -> int:
        if deque.__len__(self):
            return deque.__len__(self)
        with self._arrived:
            self._arrived.wait_for(lambda: deque.__len__(self) > 0, timeout=WAKE_WAIT_S)
            return deque.__len__(self)


class _WakingQueues(dict):
    """``Client.pending_messages_per_event`` whose queues are :class:`_WakingDeque`s (gradio_client
    stores a fresh empty ``deque()`` per event with ``d[event] = deque()`` or ``d.setdefault(event, deque())``)."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value if isinstance(value, _WakingDeque) else _WakingDeque(value))

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default if default is not None else deque()
        return self[key]


def wake_on_results(client: Any) -> Any:
    """Make ``client`` (a ``gradio_client.Client``) pick up each result as it arrives; returns it."""
    with client.pending_lock:
        queues = _WakingQueues()
        for key, value in client.pending_messages_per_event.items():
            queues[key] = value
        client.pending_messages_per_event = queues
    return client


def connect(url: str, **kwargs: Any) -> Any:
    """``gradio_client.Client(url, **kwargs)`` with the shared TLS context (unless ``ssl_verify`` is given)
    and results picked up as they arrive (:func:`wake_on_results`, on this client only)."""
    from gradio_client import Client

    kwargs.setdefault("ssl_verify", shared_ssl_context())
    kwargs.setdefault("verbose", False)
    return wake_on_results(Client(url, **kwargs))
