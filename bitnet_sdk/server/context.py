"""The running server's state, handed to handlers through the ASGI scope.

One ``AppContext`` per app instance (several can live in one process: tests
start many servers). An ASGI middleware puts it into every request's scope under
``bitnet.app``; handlers read it with ``current()`` instead of module globals.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bitnet_sdk.config import Settings

if TYPE_CHECKING:
    import peewee
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from bitnet_sdk.server.metrics import Metrics
    from bitnet_sdk.service.inference.model_cache import ModelCache
    from bitnet_sdk.service.inference.service import InferenceService
    from bitnet_sdk.service.jobs.workers import WorkerPool

__all__ = ["SCOPE_KEY", "AppContext", "ContextMiddleware", "activated", "current", "request_id"]

SCOPE_KEY = "bitnet.app"
REQUEST_ID_KEY = "bitnet.request_id"

# Set by ContextMiddleware for the request's task; Connexion runs security
# functions and sync handlers in threads that inherit the context.
_ctx: ContextVar[AppContext] = ContextVar("bitnet_app_context")
_request_id: ContextVar[str] = ContextVar("bitnet_request_id", default="")


@dataclass
class AppContext:
    """Everything a handler may need: settings, database, metrics, services."""

    settings: Settings
    metrics: Metrics
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    db: peewee.Database | None = None
    #: Scopes each operation's ``bearer`` requirement lists (for API-key checks).
    operation_scopes: dict[str, list[str]] = field(default_factory=dict)
    #: operationIds still answering 501 (filled by the resolver).
    not_implemented: list[str] = field(default_factory=list)
    # Services attached at start-up (``lifecycle.startup``), None until then or when absent.
    #: Loaded models under the memory budget, shared by every request.
    model_cache: ModelCache | None = None
    #: Inference for REST, SSE, the WebSocket and the OpenAI endpoints.
    inference: InferenceService | None = None
    #: Job worker threads, lease heartbeats and webhook deliveries.
    jobs: WorkerPool | None = None

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic


class ContextMiddleware:
    """Pure ASGI middleware: attach the ``AppContext`` and a request id to the scope.

    The request id comes from a client's ``X-Request-ID`` when it is sane, else
    is generated; it is echoed in the response and put into problem bodies.
    """

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = _incoming_request_id(scope) or f"req_{uuid.uuid4().hex[:20]}"
        scope[SCOPE_KEY] = self.ctx
        scope[REQUEST_ID_KEY] = rid
        ctx_token = _ctx.set(self.ctx)
        rid_token = _request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _ctx.reset(ctx_token)
            _request_id.reset(rid_token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if 0 < len(text) <= 128 and text.isascii() and text.isprintable():
                return text
    return None


def current() -> AppContext:
    """The ``AppContext`` of the request being handled (LookupError outside one)."""
    return _ctx.get()


def request_id() -> str:
    """The id of the request being handled ('' outside one)."""
    return _request_id.get()


@contextlib.contextmanager
def activated(ctx: AppContext, rid: str = "") -> Iterator[None]:
    """Make ``ctx`` (and request id ``rid``) current outside an ASGI request.

    For code Connexion never runs, such as the WebSocket handler calling
    ``resolve_credentials``; inside requests ``ContextMiddleware`` does this.
    """
    ctx_token = _ctx.set(ctx)
    rid_token = _request_id.set(rid)
    try:
        yield
    finally:
        _request_id.reset(rid_token)
        _ctx.reset(ctx_token)
