"""Calling the app from scripts: a ``gradio_client.Client`` that does not rebuild TLS state per request.

gradio_client 2.x sends every request (upload, queue join, result stream, one download per output
file) through a fresh ``httpx`` client, and each fresh client loads the CA bundle: 17 ms per request
on this 2-core machine, 7 requests per ``/predict``, so about 120 ms of a 250 ms call went into
certificate loading, even for ``http://``. Passing one ready ``ssl.SSLContext`` as ``ssl_verify``
(gradio_client hands it to httpx as ``verify``) keeps certificate verification and drops that cost.

    >>> from iadbe.app.client import connect
    >>> client = connect("http://127.0.0.1:7860/")  # doctest: +SKIP
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import Any


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


def connect(url: str, **kwargs: Any) -> Any:
    """``gradio_client.Client(url, **kwargs)`` with the shared TLS context (unless ``ssl_verify`` is given)."""
    from gradio_client import Client

    kwargs.setdefault("ssl_verify", shared_ssl_context())
    kwargs.setdefault("verbose", False)
    return Client(url, **kwargs)
