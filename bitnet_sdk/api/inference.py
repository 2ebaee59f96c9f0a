"""Inference operations: one request (``runInference``) and Server-Sent Events (``streamInference``).

Thin: the work is :class:`bitnet_sdk.service.inference.service.InferenceService`'s
(``ctx.inference``, attached at start-up); this module turns
its results and :class:`~bitnet_sdk.service.errors.ApiError`
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
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import connexion

from bitnet_sdk.api._http import json_response
from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.server.context import current, request_id
from bitnet_sdk.server.metering import usage_hook
from bitnet_sdk.server.streaming import ClientGone, Disconnect, EventStream, client_gone_response
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.service.inference.service import InferenceService, StreamEvent

__all__ = [
    "format_sse",
    "inference_service",
    "run_inference",
    "stream_inference",
]


_REQUEST_ID = re.compile(r"^req_[0-9a-z]{10,40}$")


async def run_inference(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    rid = _inference_id()
    service = inference_service()
    settled = threading.Event()
    work = service.run(Principal.from_token_info(token_info), body, request_id=rid,
                       on_usage=usage_hook(), settled=settled)
    try:
        result = await Disconnect(connexion.request.receive).guard(work)
    except ApiError as exc:
        await _settle(settled)
        exc.ext.setdefault("request_id", rid)
        raise
    except ClientGone:
        await _settle(settled)
        return client_gone_response()
    await _settle(settled)
    return json_response(result)


async def stream_inference(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    rid = _inference_id()
    cancel, settled = threading.Event(), threading.Event()
    events = inference_service().stream(Principal.from_token_info(token_info), body,
                                        request_id=rid, cancel=cancel, on_usage=usage_hook(),
                                        settled=settled)
    try:
        first = await Disconnect(connexion.request.receive).guard(anext(events))
    except ApiError as exc:
        await _settle(settled)
        exc.ext.setdefault("request_id", rid)
        raise
    except ClientGone:
        await _settle(settled)
        return client_gone_response()

    async def closed() -> None:
        cancel.set()  # stops the generation between two tokens, even if nobody reads on
        await events.aclose()
        await _settle(settled)  # its usage is in the request's record

    return EventStream(_sse(first, events, rid), on_close=closed, media_type="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def cancel_inference_request(request_id: str, token_info: dict[str, Any]) -> Any:
    """Stop the caller's generation ``request_id`` in whichever process runs it."""
    from bitnet_sdk.service.inference.cancellation import board

    caller = Principal.from_token_info(token_info)
    owner = None if caller.is_admin else caller.user_id
    here = await asyncio.to_thread(board(current().settings.redis_url).request, owner,
                                   request_id)
    return json_response({"request_id": request_id, "running_here": here}, status=202)


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
    except ApiError as exc:
        yield format_sse("error", exc.problem(rid))


async def _settle(settled: threading.Event, timeout: float = 10.0) -> None:
    """Wait (off the loop) until the request's computation has stopped and reported usage."""
    if not settled.is_set():
        await asyncio.to_thread(settled.wait, timeout)


def inference_service() -> InferenceService:
    """The server's inference service; 503 when it is not running here."""
    service = current().inference
    if service is None:
        raise ApiError(503, "Service Unavailable", "Inference is not running on this server.",
                       slug="unavailable", headers={"Retry-After": "5"})
    return service


def _inference_id() -> str:
    """The request id when it fits the API's ``RequestId`` pattern, else a fresh one."""
    rid = request_id()
    return rid if _REQUEST_ID.match(rid) else f"req_{uuid.uuid4().hex[:24]}"


# The batch operations belong to the jobs system; re-exported here for the spec's controller.
from bitnet_sdk.api.inference_jobs import (  # noqa: E402
    cancel_inference_job,
    create_inference_batch,
    get_inference_job,
)

__all__ += ["cancel_inference_job", "create_inference_batch", "get_inference_job"]
