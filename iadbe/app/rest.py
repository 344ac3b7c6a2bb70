"""Plain HTTP routes on the app's own server: one request, one JSON answer, for machines on a line.

Through ``gradio_client`` a ``/predict`` is eight HTTP round trips (upload, queue join, event stream,
view downloads); these routes are one::

    POST /api/v1/predict?model=ID            body: the image's bytes, or multipart/form-data with one file
    POST /api/v1/predict/batch?model=ID      multipart/form-data, up to ``MAX_BATCH_FILES`` files
    GET  /api/v1/models                      the models this caller may use
    GET  /api/v1/docs, /openapi.json         the OpenAPI description

Options of both predict routes (query parameters): ``threshold`` (0.5 = the calibrated point),
``false_alarm_rate`` (e.g. 0.01: the share of good parts that may be flagged), ``backend``
(auto/torch/openvino), ``mask`` (none, ``png``: the decision mask as a base64 PNG, ``polygons``: its regions
as ``[[x, y], ...]`` outlines), for raw bodies ``name`` (echoed back). A box detector (YOLO) adds ``boxes``.

The routes use what the Inference tab uses: ``common.resolve_model`` (only models the caller may use),
``load_model`` (the same model cache) and ``LoadedModel.predict`` (the same decisions); nothing is
re-implemented here. Who the caller is: in single-user mode the local user; in shared mode (a public Space)
the account of the app's signed session cookie when the caller signed in with Hugging Face, otherwise
nobody, who sees the shared models only. An anonymous browser session's workspace is never reachable here.

Limits are the app's: ``common.MAX_FILE_BYTES`` per request (413), ``common.DEFAULT_CONCURRENCY``
predictions at once with up to ``common.QUEUE_MAX_SIZE`` waiting (then 503 with ``Retry-After``),
``common.MAX_BATCH_FILES`` files per batch (413). Every error is ``{"error": {"code", "message"}}`` with a
status code that says what went wrong (:data:`STATUS`).

Tests: ``tests/test_rest.py`` (a real server over loopback). Benchmark: ``bench/rest.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from typing import Any, AsyncIterator, Callable, Literal, Optional

from fastapi import Query, Request  # the routes' annotations are resolved from this module's names

from iadbe.app.common import DEFAULT_CONCURRENCY, MAX_BATCH_FILES, MAX_FILE_BYTES, QUEUE_MAX_SIZE

logger = logging.getLogger("iadbe.app.rest")

PREFIX = "/api/v1"
MASK_KINDS = ("none", "png", "polygons")
#: error code -> HTTP status
STATUS = {
    "bad_request": 400, "bad_image": 400, "bad_setting": 400, "not_allowed": 403, "unknown_model": 404,
    "unsupported_media_type": 415, "too_large": 413, "model_unusable": 422, "busy": 503, "out_of_memory": 503,
    "internal": 500,
}
RETRY_AFTER_S = 1


class APIError(Exception):
    """An answer other than 200: ``code`` (a key of :data:`STATUS`) and a message that says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, STATUS[code]


# --------------------------------------------------------------------------- limits
class Gate:
    """At most ``running`` requests at work, at most ``waiting`` more waiting; beyond that :class:`APIError`
    ``busy`` at once (a line controller retries, it does not want a request parked for minutes)."""

    def __init__(self, running: int = DEFAULT_CONCURRENCY, waiting: int = QUEUE_MAX_SIZE) -> None:
        self.running, self.max_waiting = running, waiting
        self.waiting = 0
        self._semaphore: asyncio.Semaphore | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Wait for a slot (yields the seconds waited); raises ``busy`` when the waiting room is full."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.running)
        if self._semaphore.locked() and self.waiting >= self.max_waiting:
            raise APIError("busy", f"The server is busy ({self.running} predictions running, {self.waiting} "
                                   f"waiting); retry in {RETRY_AFTER_S} s.")
        began = time.perf_counter()
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        try:
            yield time.perf_counter() - began
        finally:
            self._semaphore.release()


GATE = Gate()


async def read_body(receive: Callable[[], Any], declared: str | None, limit: int = MAX_FILE_BYTES) -> bytes:
    """The request body from an ASGI ``receive``, refused with ``too_large`` as soon as it passes ``limit``
    bytes (a declared ``Content-Length`` above it is refused before anything is read)."""
    if declared is not None:
        try:
            if int(declared) > limit:
                raise APIError("too_large", f"The request is {int(declared):,} bytes; the limit is {limit:,}.")
        except ValueError:
            raise APIError("bad_request", f"Invalid Content-Length {declared!r}.") from None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise APIError("bad_request", "The client went away before the body was complete.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise APIError("too_large", f"The request is over the limit of {limit:,} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def uploaded_files(request: Any, most: int) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the request: its raw body, or each file part of a multipart form (in order).

    Raises:
        APIError: too large, more than ``most`` files, an empty body or a form without a file.
    """
    from starlette.requests import Request

    body = await read_body(request.receive, request.headers.get("content-length"))
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=most + 1, max_fields=most + 16)
        except Exception as error:  # noqa: BLE001 - starlette's MultiPartException and parser errors
            raise APIError("bad_request", f"Unreadable multipart form ({error}).") from None
        files = [(str(value.filename or key), await value.read()) for key, value in form.multi_items()
                 if hasattr(value, "read")]
        await form.close()
        if not files:
            raise APIError("bad_request", "The form holds no file: send the image as a file part (e.g. 'image').")
        if len(files) > most:
            raise APIError("too_large", f"{len(files)} files: at most {most} per request.")
        return files
    if kind in ("application/x-www-form-urlencoded", "application/json", "text/plain"):
        raise APIError("unsupported_media_type", f"Send the image's bytes (e.g. Content-Type: image/png or "
                                                 f"application/octet-stream) or a multipart form, not {kind}.")
    if not body:
        raise APIError("bad_request", "The request body is empty (0 bytes): send the image's bytes.")
    return [(request.query_params.get("name") or "image", body)]


# --------------------------------------------------------------------------- who is asking, which model
def caller_workspace(request: Any) -> Any:
    """The caller's workspace as the app would see it, or None (shared models only).

    Single-user mode: the local user. Shared mode: the Hugging Face account of the app's signed session
    cookie (the same cookie and the same expiry rule Gradio uses for ``gr.OAuthProfile``), else None.
    """
    from iadbe import constants
    from iadbe.app.common import visitor_workspace

    if not constants.SHARED_MODE:
        return visitor_workspace(None, None)
    session = request.scope.get("session") or {}  # present only when the app has OAuth (SessionMiddleware)
    info = session.get("oauth_info") if hasattr(session, "get") else None
    if not info or (info.get("expires_at") is not None and info["expires_at"] < time.time()):
        return None
    username = (info.get("userinfo") or {}).get("preferred_username")
    return visitor_workspace(None, {"preferred_username": username}) if username else None


def load_for_caller(model: str, backend: str, workspace: Any) -> Any:
    """The model, if the caller may use it (``common.resolve_model``), through the shared model cache."""
    from iadbe.app.common import resolve_model
    from iadbe.app.startup import import_heavy_libraries
    from iadbe.inference import load_model

    text = (model or "").strip()
    if not text:
        raise APIError("bad_request", "Name a model: ?model=ID (GET /api/v1/models lists them).")
    import gradio as gr

    try:
        location = resolve_model(text, workspace)
    except gr.Error as error:  # resolve_model speaks to the app's user; for a given id it only says "unknown"
        raise APIError("unknown_model", f"Unknown model {text!r}: GET /api/v1/models lists the models you may "
                                        "use.") from error
    import_heavy_libraries()
    return load_model(location, backend=backend)


def model_rows(workspace: Any) -> list[dict[str, Any]]:
    """``GET /api/v1/models``: the models the caller may use (never a server path)."""
    from iadbe.app.common import entry_label, visible_catalog
    from iadbe.demo import is_demo

    return [{"id": entry.id, "label": entry_label(entry), "source": entry.source, "detector": entry.model,
             "backbone": entry.backbone, "dataset": entry.dataset, "category": entry.category,
             "demo": is_demo(entry.id), "cached": entry.cached, "metrics": entry.metrics}
            for entry in visible_catalog(workspace)]


# --------------------------------------------------------------------------- predictions
def prediction_json(prediction: Any, model_id: str, mask: str) -> dict[str, Any]:
    """One prediction as JSON: the decision, what made it, and (``mask``) the region shown for it."""
    from iadbe.render import mask_png, mask_polygons

    out: dict[str, Any] = {
        "file": prediction.name, "model": model_id, "score": round(prediction.score, 6),
        "label": prediction.label_text, "anomalous": prediction.label, "threshold": prediction.threshold,
        "raw_score": prediction.raw_score, "normal_percentile": prediction.normal_percentile, **prediction.box_details(),
        "image_size": list(prediction.image.shape[:2]), "backend": prediction.backend, "device": prediction.device,
        "timings_ms": {key: round(value, 3) for key, value in prediction.timings_ms.items()},
    }
    if mask == "png":
        decision = prediction.mask
        out["mask_png"] = None if decision is None else base64.b64encode(mask_png(decision)).decode("ascii")
    elif mask == "polygons":
        decision = prediction.mask
        out["regions"] = [] if decision is None else mask_polygons(decision)
    return out


def check_mask(mask: str) -> str:
    if mask not in MASK_KINDS:
        raise APIError("bad_setting", f"mask must be one of {', '.join(MASK_KINDS)}, got {mask!r}")
    return mask


def predict_files(files: list[tuple[str, bytes]], workspace: Any, model: str, backend: str,
                  threshold: float | None, false_alarm_rate: float | None, mask: str,
                  keep_going: bool) -> list[dict[str, Any]]:
    """Predict each file with the library (runs in a worker thread). ``keep_going``: an unreadable file gets
    an ``error`` entry instead of failing the request (batches)."""
    from iadbe.errors import ImageError

    check_mask(mask)
    loaded = load_for_caller(model, backend, workspace)
    results = []
    for name, data in files:
        try:
            prediction = loaded.predict(data, threshold=threshold, names=[name], false_alarm_rate=false_alarm_rate)[0]
        except ImageError as error:
            if not keep_going:
                raise
            results.append({"file": name, "error": {"code": "bad_image", "message": str(error)}})
            continue
        results.append(prediction_json(prediction, model, mask))
    return results


async def answer(request: Any, work: Callable[[], Any], most_files: int = 1) -> Any:
    """Run one route: limits, the caller, the work in a thread, and errors turned into JSON."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    began = time.perf_counter()
    try:
        async with GATE.slot() as waited_s:
            files = await uploaded_files(request, most_files) if most_files else []
            body = await run_in_threadpool(lambda: work(files, caller_workspace(request)))
        if isinstance(body, dict):
            body["server_ms"] = round(1000 * (time.perf_counter() - began), 3)
            body["queue_ms"] = round(1000 * waited_s, 3)
        return JSONResponse(body)
    except Exception as error:  # noqa: BLE001 - the boundary: every failure is a JSON answer
        return error_response(error, request)


def error_response(error: BaseException, request: Any = None) -> Any:
    """The JSON answer for ``error``: our typed errors keep their message (redacted), anything else is logged
    and answered as ``internal``."""
    from starlette.responses import JSONResponse

    from iadbe.app.common import redact
    from iadbe.errors import ImageError, IADBEError, QuotaError, SettingsError, WorkspaceError

    if not isinstance(error, APIError):
        if isinstance(error, ImageError):
            error = APIError("bad_image", str(error))
        elif isinstance(error, SettingsError):
            error = APIError("bad_setting", str(error))
        elif isinstance(error, (QuotaError, WorkspaceError)):
            error = APIError("not_allowed", str(error))
        elif isinstance(error, IADBEError):
            error = APIError("model_unusable", str(error))
        elif isinstance(error, MemoryError):
            error = APIError("out_of_memory", "Out of memory: try a smaller image or fewer files.")
        else:
            where = getattr(getattr(request, "url", None), "path", "?")
            logger.error("unexpected error in %s", where, exc_info=error)
            error = APIError("internal", f"Unexpected error ({type(error).__name__}: {redact(str(error))[:300]}). "
                                         "The server is still running; its log has the details.")
    headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status == 503 else None
    return JSONResponse({"error": {"code": error.code, "message": redact(error.message)}}, status_code=error.status,
                        headers=headers)


# --------------------------------------------------------------------------- routes
def routes() -> list[Any]:
    """The routes, for ``FastAPI(routes=...)`` (``server.launch`` hands them to Gradio's app)."""
    from fastapi import APIRouter
    from fastapi.exceptions import RequestValidationError
    from fastapi.routing import APIRoute

    class Route(APIRoute):
        """A route whose parameter errors are answered in the same JSON shape as every other error."""

        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()

            async def checked(request: Request) -> Any:
                try:
                    return await handler(request)
                except RequestValidationError as error:
                    problems = "; ".join(f"{'.'.join(str(p) for p in item.get('loc', ())[1:])}: {item.get('msg')}"
                                         for item in error.errors())
                    return error_response(APIError("bad_setting", f"Invalid parameter ({problems})."), request)

            return checked

    router = APIRouter(prefix=PREFIX, route_class=Route, tags=["IADBE"])
    body_doc = {"requestBody": {"required": True, "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "string", "format": "binary"}}}}}}}
    batch_doc = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}
    errors_doc = {code: {"description": text} for code, text in (
        (400, "bad image, parameter or body"), (404, "unknown model"), (413, "too large / too many files"),
        (415, "unsupported media type"), (422, "the model cannot be used here"), (503, "busy: retry after Retry-After"))}
    Model = Query(..., description="model id (GET /api/v1/models)")
    Threshold = Query(None, description="decision threshold on the normalised score (0.5 = calibrated point)")
    Rate = Query(None, description="share of good parts that may be flagged, e.g. 0.01 (default: calibrated)")
    Backend = Query("auto", description="auto (OpenVINO on CPU, torch on CUDA), torch or openvino")
    Mask = Query("none", description="none, png (base64 PNG of the decision mask) or polygons (region outlines)")

    @router.post("/predict", summary="Predict one image", openapi_extra=body_doc, responses=errors_doc)
    async def predict(request: Request, model: str = Model, threshold: Optional[float] = Threshold,
                      false_alarm_rate: Optional[float] = Rate,
                      backend: Literal["auto", "torch", "openvino"] = Backend,
                      mask: Literal["none", "png", "polygons"] = Mask,
                      name: Optional[str] = Query(None, description="file name echoed back (raw bodies)")) -> Any:
        """The image's bytes (any image Content-Type, or application/octet-stream), or a multipart form with
        one file. Answers score, label, threshold, model, backend, timings and, on request, the mask."""
        def work(files: list[tuple[str, bytes]], workspace: Any) -> dict[str, Any]:
            return predict_files(files, workspace, model, backend, threshold, false_alarm_rate, mask, False)[0]

        return await answer(request, work)

    @router.post("/predict/batch", summary=f"Predict up to {MAX_BATCH_FILES} images", openapi_extra=batch_doc,
                 responses=errors_doc)
    async def predict_batch(request: Request, model: str = Model, threshold: Optional[float] = Threshold,
                            false_alarm_rate: Optional[float] = Rate,
                            backend: Literal["auto", "torch", "openvino"] = Backend,
                            mask: Literal["none", "png", "polygons"] = Mask) -> Any:
        """A multipart form with one file part per image. Each unreadable file gets an ``error`` entry;
        when none can be read the answer is 400."""
        def work(files: list[tuple[str, bytes]], workspace: Any) -> dict[str, Any]:
            results = predict_files(files, workspace, model, backend, threshold, false_alarm_rate, mask, True)
            if all("error" in item for item in results):
                raise APIError("bad_image", "No image could be read: " + "; ".join(
                    item["error"]["message"] for item in results[:5]))
            return {"model": model, "count": len(results), "results": results,
                    "anomalous": sum(item.get("anomalous", False) for item in results)}

        return await answer(request, work, most_files=MAX_BATCH_FILES)

    @router.get("/models", summary="The models this caller may use")
    async def models(request: Request) -> Any:
        return await answer(request, lambda _, workspace: {"models": model_rows(workspace)}, most_files=0)

    return list(router.routes)


def describe_only_these(app: Any) -> None:
    """Let the app's ``/openapi.json`` (and ``/api/v1/docs``) describe these routes only: Gradio's internal
    routes (queue, uploads, ...) are not an API for a line controller. Changes this one app object."""
    from fastapi.openapi.utils import get_openapi

    from iadbe import __version__

    ours = [route for route in app.routes if str(getattr(route, "path", "")).startswith(PREFIX)]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(title=app.title, version=__version__, description=app.description,
                                             routes=ours)
        return app.openapi_schema

    app.openapi = openapi


def app_kwargs() -> dict[str, Any]:
    """What ``demo.launch(app_kwargs=...)`` needs to serve the routes and their OpenAPI page."""
    return {"routes": routes(), "docs_url": f"{PREFIX}/docs", "title": "IADBE",
            "description": "Industrial anomaly detection: REST routes beside the Gradio app (README, 'REST API')."}
