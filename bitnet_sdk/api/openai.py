"""OpenAI-compatible operations (``openapi/openai.yaml``, served under ``/openai/v1``).

Thin, like the native inference handlers: :mod:`bitnet_sdk.service.inference.openai_compat`
translates bodies both ways, :class:`~bitnet_sdk.service.inference.service.InferenceService`
does the work, the model registry (:mod:`bitnet_sdk.service.registry.models`) says
which models a caller sees. Credentials, rate limits and usage metering are
the native API's (security functions, the rate-limit middleware, the
request's meter), so an OpenAI request counts exactly like a native one.

Errors are raised as :class:`~bitnet_sdk.service.errors.ApiError`\\ s with
``param`` and ``openai_code`` members; the server renders every problem on a
path under ``/openai/`` as an OpenAI error object
(:func:`~bitnet_sdk.service.inference.openai_compat.error_from_problem`), whoever raised
it: these handlers, Connexion's validation and security, routing, the rate
limiter.

Model names: ``model`` is resolved by the registry's one rule, the native
API's too (:func:`bitnet_sdk.service.registry.models.resolve_model`: never another
account's model by name); ``/models`` lists in that rule's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import connexion

from bitnet_sdk.api._http import json_response
from bitnet_sdk.api.inference import inference_service
from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.server.metering import usage_hook
from bitnet_sdk.server.streaming import ClientGone, Disconnect, EventStream, client_gone_response
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.service.inference import openai_compat as oc
from bitnet_sdk.service.inference.batching import Group
from bitnet_sdk.service.inference.service import StreamEvent

__all__ = [
    "openai_create_chat_completion",
    "openai_create_completion",
    "openai_list_models",
    "openai_retrieve_model",
    "resolve_model",
    "visible_models",
]



# -- models --------------------------------------------------------------------------------


def visible_models(token_info: dict[str, Any]) -> list[Any]:
    """Ready language models the caller may run, in the resolver's order. Blocking (database)."""
    from bitnet_sdk.service.registry import models

    return models.runnable_models(Principal.from_token_info(token_info))


def resolve_model(ident: str, token_info: dict[str, Any]) -> Any:
    """The model record ``ident`` names for the caller, or a 404/409 problem. Blocking.

    Any kind or status (running it says why it cannot run).
    """
    from bitnet_sdk.service.registry import models

    try:
        return models.resolve_model(Principal.from_token_info(token_info), ident)
    except models.AmbiguousModelName as exc:
        raise ApiError(409, "Conflict", str(exc), slug="model-ambiguous", param="model",
                       openai_code="model_ambiguous", candidates=exc.candidates) from None
    except models.ModelNotFound as exc:
        raise _model_not_found(ident, exc) from None


def _model_not_found(ident: str, exc: Exception | None = None) -> ApiError:
    detail = f"The model `{ident}` does not exist or you do not have access to it."
    public_ids = getattr(exc, "public_ids", None)
    if public_ids:
        detail += (" Public models of other accounts are used by id only: "
                   f"{', '.join(public_ids)}.")
    return ApiError(404, "Not Found", detail, slug="model-not-found", param="model",
                    openai_code="model_not_found")


def _model_object(record: Any, token_info: dict[str, Any],
                  listed_as: str | None = None) -> dict[str, Any]:
    """``owned_by``: the caller's id on their own models, ``user`` on other users' (whose
    ids are not for strangers), ``system`` on the server's."""
    owner = getattr(record, "owner_id", None)
    if owner is not None and owner != token_info.get("sub"):
        owner = "user"
    return oc.model_object(listed_as or record.id, int(record.created_at.timestamp()), owner)


def listed_models(token_info: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``/models`` listing: each ready language model the caller sees by its id, and
    before those by its name wherever that name resolves to it for this caller (with the
    same :func:`resolve_model` a request uses, so a listed name is one that works). Blocking.
    """
    records = visible_models(token_info)
    named: list[dict[str, Any]] = []
    for name in dict.fromkeys(r.name for r in records if r.name and not r.name.startswith("mdl_")):
        with contextlib.suppress(ApiError):
            target = resolve_model(name, token_info)
            if target.kind == "llm" and target.status == "ready":
                named.append(_model_object(target, token_info, name))
    return named + [_model_object(r, token_info) for r in records]


async def openai_list_models(token_info: dict[str, Any]) -> Any:
    data = await asyncio.to_thread(listed_models, token_info)
    return json_response({"object": "list", "data": data})


async def openai_retrieve_model(model: str, token_info: dict[str, Any]) -> Any:
    record = await asyncio.to_thread(resolve_model, model, token_info)
    if record.kind != "llm" or record.status != "ready":
        raise _model_not_found(model)
    return json_response(_model_object(record, token_info))


# -- completions ---------------------------------------------------------------------------


@dataclass
class _Job:
    """One OpenAI request, translated: who asks, what to run, how to answer."""

    chat: bool
    caller: Principal
    model_id: str
    generations: list[oc.Generation]
    logprobs: bool
    include_usage: bool
    completion_id: str
    created: int


async def openai_create_completion(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    return await _answer(await _job(body, token_info, chat=False), bool(body.get("stream")))


async def openai_create_chat_completion(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    return await _answer(await _job(body, token_info, chat=True), bool(body.get("stream")))


async def _job(body: dict[str, Any], token_info: dict[str, Any], *, chat: bool) -> _Job:
    record = await asyncio.to_thread(resolve_model, str(body["model"]), token_info)
    try:
        if chat:
            generations = oc.chat_generations(body, record.id)
        else:
            generations = oc.completion_generations(body, record.id)
    except oc.CompatError as exc:
        raise ApiError(400, "Bad Request", exc.message, slug="bad-request", param=exc.param,
                       openai_code=exc.code) from None
    prefix = "chatcmpl" if chat else "cmpl"
    options = body.get("stream_options") or {}
    return _Job(chat=chat, caller=Principal.from_token_info(token_info), model_id=record.id,
                generations=generations,
                logprobs=bool(body.get("logprobs")) if chat else body.get("logprobs") is not None,
                include_usage=bool(options.get("include_usage")),
                completion_id=f"{prefix}-{uuid.uuid4().hex[:24]}", created=int(time.time()))


async def _answer(job: _Job, stream: bool) -> Any:
    watch, books = Disconnect(connexion.request.receive), _Books()
    try:
        if stream:
            return await _stream(job, watch, books)
        response = await _complete(job, watch, books)
    except ClientGone:
        await books.settle()
        return client_gone_response()  # an OpenAI error object, as every problem under /openai/
    except ApiError as exc:
        await books.settle()
        raise _problem(exc, job) from None
    await books.settle()
    return response


async def _complete(job: _Job, watch: Disconnect, books: _Books) -> Any:
    service, results = inference_service(), []
    together = _together(job)
    group = Group(len(job.generations)) if together else None  # one batch round, one prefill

    def run(generation: oc.Generation) -> Awaitable[dict[str, Any]]:
        return service.run(job.caller, generation.request, on_usage=usage_hook(),
                           request_id=_request_id(job, generation), settled=books.new(),
                           group=group)

    if together:
        responses = await watch.guard(asyncio.gather(*map(run, job.generations)))
        results = [oc.Result.from_response(g, r)
                   for g, r in zip(job.generations, responses, strict=True)]
    for generation in job.generations if not results else ():
        response = await watch.guard(run(generation))
        results.append(oc.Result.from_response(generation, response))
    build = oc.chat_completion if job.chat else oc.text_completion
    return json_response(build(job.completion_id, job.created, job.model_id, results,
                               logprobs=job.logprobs))


async def _stream(job: _Job, watch: Disconnect, books: _Books) -> Any:
    """Answer once the first event is there, so problems before it are plain error responses."""
    cancel = threading.Event()
    meter = usage_hook()
    together = _together(job)
    group = Group(len(job.generations)) if together else None  # one batch round, one prefill

    def events_of(generation: oc.Generation) -> AsyncIterator[StreamEvent]:
        """A generation's events; call only right before iterating (its books wait for it)."""
        return inference_service().stream(job.caller, generation.request, cancel=cancel,
                                          on_usage=meter, request_id=_request_id(job, generation),
                                          settled=books.new(), group=group)

    pumps: list[asyncio.Task[None]] = []
    source = events_of
    if together:  # every choice starts now (one batch, one prefill); their events wait in order
        started = [_prefetch(events_of(g), pumps) for g in job.generations]

        def source(generation: oc.Generation) -> AsyncIterator[StreamEvent]:
            return started[job.generations.index(generation)]

    events = source(job.generations[0])
    first = await watch.guard(anext(events))
    body = _chunks(job, first, events, source)

    async def closed() -> None:
        cancel.set()  # stops the generation between two tokens, even if nobody reads on
        await _aclose(body)
        for pump in pumps:
            pump.cancel()
        await books.settle()  # its usage is in the request's record

    return EventStream(body, on_close=closed, media_type="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _chunks(job: _Job, first: StreamEvent, events: AsyncIterator[StreamEvent],
                  events_of: Callable[[oc.Generation], AsyncIterator[StreamEvent]]
                  ) -> AsyncGenerator[str, None]:
    builder = oc.ChunkBuilder(chat=job.chat, completion_id=job.completion_id,
                              created=job.created, model=job.model_id, logprobs=job.logprobs,
                              include_usage=job.include_usage)
    try:
        for number, generation in enumerate(job.generations):
            if number:
                events = events_of(generation)
            event = first if number == 0 else await anext(events)
            opening = builder.start(generation)
            if opening is not None:
                yield oc.sse(opening)
            while event[0] == "token":
                chunk = builder.token(generation.index, event[1])
                if chunk is not None:
                    yield oc.sse(chunk)
                event = await anext(events)
            yield oc.sse(builder.finish(generation, event[1]))
        if job.include_usage:
            yield oc.sse(builder.usage_chunk())
        yield oc.SSE_DONE
    except ApiError as exc:  # after the first event: the last message
        problem = _problem(exc, job)
        yield oc.sse(oc.error_from_problem(problem.status, problem.problem()))
    finally:  # closed early (client gone): stop the generation now, not when collected
        await _aclose(events)


def _prefetch(events: AsyncIterator[StreamEvent],
              pumps: list[asyncio.Task[None]]) -> AsyncIterator[StreamEvent]:
    """Start iterating ``events`` now (its generation joins the batch); read them later.

    The pump task is added to ``pumps``; cancelling it stops the generation.
    """
    queue: asyncio.Queue[tuple[StreamEvent | None, BaseException | None]] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait((event, None))
        except Exception as exc:
            queue.put_nowait((None, exc))
        finally:
            queue.put_nowait((None, None))

    pumps.append(asyncio.ensure_future(pump()))

    async def read() -> AsyncGenerator[StreamEvent, None]:
        while True:
            event, error = await queue.get()
            if error is not None:
                raise error
            if event is None:
                return
            yield event

    return read()


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    """Close an async generator; one still running is ended by its cancellation instead."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(RuntimeError):
            await aclose()


# -- plumbing ------------------------------------------------------------------------------


def _request_id(job: _Job, generation: oc.Generation) -> str:
    """The native request id of one generation (``req_`` + the completion id's hex, + index)."""
    return f"req_{job.completion_id.rpartition('-')[2]}{generation.index:02d}"


def _together(job: _Job) -> bool:
    """Whether a request has several choices: they run at once (batched, one prefill per
    prompt: a ``batching.Group``) and reserve the month's quota together, all or none."""
    return len(job.generations) >= 2


def _problem(exc: ApiError, job: _Job) -> ApiError:
    """A native inference problem, with the OpenAI status, ``param`` and ``code`` for it."""
    status, code, param = exc.status, None, None
    if "openai_code" in exc.ext or "param" in exc.ext:  # already in OpenAI's terms
        return exc
    if exc.status == 404:
        return _model_not_found(job.model_id)
    if exc.status == 409:
        code = "model_ambiguous" if exc.slug == "model-ambiguous" else "model_not_ready"
        param = "model"
    elif exc.status == 422:  # OpenAI answers 400 for requests the model cannot take
        status = 400
        if "context window" in (exc.detail or ""):
            # The input that overflowed: chat's messages, a completion's prompt.
            code, param = "context_length_exceeded", "messages" if job.chat else "prompt"
    return ApiError(status, exc.title if status == exc.status else "Bad Request", exc.detail,
                    slug=exc.slug, headers=exc.headers or None, param=param, openai_code=code,
                    **exc.ext)


class _Books:
    """The ``settled`` events of a request's generations.

    The request's usage record is written when its response ends; waiting for
    every generation to have stopped and reported its usage first puts a
    cancelled or failed generation's tokens in that record too.
    """

    def __init__(self) -> None:
        self._events: list[threading.Event] = []

    def new(self) -> threading.Event:
        event = threading.Event()
        self._events.append(event)
        return event

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait (off the loop, at most ``timeout`` each) for the generations started so far."""
        for event in self._events:
            if not event.is_set():
                await asyncio.to_thread(event.wait, timeout)



