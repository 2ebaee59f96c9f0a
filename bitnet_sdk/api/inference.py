"""Inference operations: one request (``runInference``) and Server-Sent Events (``streamInference``).

Thin: the work is :class:`bitnet_sdk.service.inference.service.InferenceService`'s
(registered as ``ctx.services["inference"]`` at start-up); this module turns
its results and :class:`~bitnet_sdk.service.inference.plan.InferenceError`
into HTTP.

* A client that closes the connection cancels its request, queued or running:
  a watcher awaits the ASGI ``http.disconnect`` while the service works.
* ``streamInference`` waits for the first event before answering, so every
  problem found before generation starts (unknown model, queue full, prompt too
  long) is an ordinary problem response; after that the stream ends with an
  ``error`` event. Each token is written (and flushed by the bridge) as soon as
  it is sampled; Connexion has no response validator for ``text/event-stream``,
  so nothing buffers the stream.
* Usage goes to the request's meter (:mod:`bitnet_sdk.server.metering`), which
  the rate-limit middleware writes as the request's usage record.

The batch operations (``createInferenceBatch``, ``getInferenceJob``,
``cancelInferenceJob``) belong to the jobs system and are not defined here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import connexion
from starlette.responses import Response
from starlette.types import Receive, Scope

from bitnet_sdk.api._http import json_response
from bitnet_sdk.server.context import current, request_id
from bitnet_sdk.server.metering import usage_hook
from bitnet_sdk.server.problems import PROBLEM_MEDIA_TYPE, Problem
from bitnet_sdk.server.streaming import EventStream, Unheard
from bitnet_sdk.service.inference.plan import Caller, InferenceError
from bitnet_sdk.service.inference.service import InferenceService, StreamEvent

__all__ = [
    "DEFAULT_JSON_LIMIT",
    "INFERENCE_JSON_LIMIT",
    "format_sse",
    "json_body_limit",
    "run_inference",
    "stream_inference",
]

#: Largest JSON body of ``POST /inference`` and ``/inference/stream`` (413 above). Connexion
#: validates bodies on the event loop, tensor numbers at about 4 ms per KiB on a loaded
#: 2-core machine: every other request waits meanwhile. 128 KiB is still more prompt than
#: any context window holds, or some 30,000 numbers of dense input.
INFERENCE_JSON_LIMIT = 128 << 10
#: Largest JSON body of every other operation (batches of requests: about 2 s of validation).
DEFAULT_JSON_LIMIT = 512 << 10
_SINGLE_REQUEST_PATHS = frozenset({"/v1/inference", "/v1/inference/stream"})

T = TypeVar("T")

_REQUEST_ID = re.compile(r"^req_[0-9a-z]{10,40}$")
_background: set[asyncio.Task[Any]] = set()
_GONE = object()


async def run_inference(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    rid = _inference_id()
    service = _service()
    settled = threading.Event()
    work = service.run(Caller.from_token_info(token_info), body, request_id=rid,
                       on_usage=usage_hook(), settled=settled)
    try:
        result = await _until_disconnect(work)
    except InferenceError as exc:
        await _settle(settled)
        raise _problem(exc, rid) from None
    await _settle(settled)
    if result is _GONE:
        return _client_gone()
    return json_response(result)


async def stream_inference(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    rid = _inference_id()
    cancel, settled = threading.Event(), threading.Event()
    events = _service().stream(Caller.from_token_info(token_info), body, request_id=rid,
                               cancel=cancel, on_usage=usage_hook(), settled=settled)
    try:
        first = await _until_disconnect(anext(events))
    except InferenceError as exc:
        await _settle(settled)
        raise _problem(exc, rid) from None
    if first is _GONE:
        await _settle(settled)
        return _client_gone()

    async def closed() -> None:
        cancel.set()  # stops the generation between two tokens, even if nobody reads on
        await events.aclose()
        await _settle(settled)  # its usage is in the request's record

    return EventStream(_sse(first, events, rid), on_close=closed, media_type="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def json_body_limit(scope: Scope) -> int:
    """Body limit for ``BodyLimitMiddleware`` on ``application/json`` requests."""
    path = str(scope.get("path", "")).rstrip("/")
    return INFERENCE_JSON_LIMIT if path in _SINGLE_REQUEST_PATHS else DEFAULT_JSON_LIMIT


def format_sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    """One Server-Sent Event; ``data`` is one line of JSON (``json.dumps`` escapes newlines)."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {json.dumps(data)}\n\n"


async def _sse(first: StreamEvent, events: AsyncIterator[StreamEvent],
               rid: str) -> AsyncIterator[str]:
    event = first
    try:
        while True:
            kind, data = event
            yield format_sse(kind, data, str(data["index"]) if kind == "token" else None)
            if kind == "done":
                return
            event = await anext(events)
    except InferenceError as exc:
        yield format_sse("error", exc.problem(rid))





def _client_gone() -> Response:
    body = {"type": "urn:bitnet:problem:client-closed", "title": "Client Closed Request",
            "status": 400, "detail": "The client closed the connection."}
    return Unheard(json.dumps(body), status_code=400, media_type=PROBLEM_MEDIA_TYPE)


async def _until_disconnect(work: Awaitable[T]) -> T | object:
    """Await ``work`` unless the client disconnects first: then cancel it, return ``_GONE``."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(connexion.request.receive))
    _background.add(watcher)
    watcher.add_done_callback(_background.discard)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, InferenceError):
            await task
        return _GONE
    return task.result()


async def _settle(settled: threading.Event, timeout: float = 10.0) -> None:
    """Wait (off the loop) until the request's computation has stopped and reported usage."""
    if not settled.is_set():
        await asyncio.to_thread(settled.wait, timeout)


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (or the response is complete: then nobody waits)."""
    with contextlib.suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass


def _service() -> InferenceService:
    service = current().services.get("inference")
    if service is None:
        raise Problem(503, "Service Unavailable", "Inference is not running on this server.",
                      slug="unavailable", headers={"Retry-After": "5"})
    return service


def _inference_id() -> str:
    """The request id when it fits the API's ``RequestId`` pattern, else a fresh one."""
    rid = request_id()
    return rid if _REQUEST_ID.match(rid) else f"req_{uuid.uuid4().hex[:24]}"


def _problem(exc: InferenceError, rid: str) -> Problem:
    return Problem(exc.status, exc.title, exc.detail, slug=exc.slug,
                   headers=exc.headers or None, request_id=rid, **exc.ext)


# The batch operations belong to the jobs system; re-exported here for the spec's controller.
from bitnet_sdk.api.inference_jobs import (  # noqa: E402
    cancel_inference_job,
    create_inference_batch,
    get_inference_job,
)

__all__ += ["cancel_inference_job", "create_inference_batch", "get_inference_job"]
