"""ASGI over Tornado: one ``RequestHandler`` that runs an ASGI 3 application per HTTP request.

Why this exists: Connexion 3 is an ASGI application and Tornado has no ASGI container
(``tornado.wsgi.WSGIContainer`` blocks the loop and cannot stream). Both run on the same
asyncio loop, so the bridge needs no threads: Tornado parses HTTP/1.1, this handler turns
each request into an ASGI ``http`` scope, feeds the body to ``receive()`` as it arrives and
writes every ``send()`` message straight to the socket.

Contract (ASGI 3.0, HTTP spec 2.3):

* The body is streamed (``@stream_request_body``) through a buffer bounded in bytes; when
  the application does not read, Tornado stops reading the socket (back-pressure), so a
  20 GiB upload never sits in memory. The size limit is raised per request.
* ``receive()`` returns ``http.request`` messages until ``more_body`` is false, then blocks
  until the client disconnects or the response is complete and returns ``http.disconnect``
  (returning at once would make Starlette spin the loop).
* Each ``http.response.body`` with ``more_body`` is written and flushed (SSE streams); the
  response finishes when ``more_body`` is false. Once the client is gone ``send()`` does
  nothing (as uvicorn does at spec 2.3): the application learns of it from ``receive()``
  (Starlette then cancels a streaming response), and frameworks see no stray ``OSError``.
* Tornado's own behaviour is switched off: no ETag/304, no ``Server``/``Content-Type``
  defaults, every method (even ``PROPFIND``) reaches the application.
* An application that answers without reading the body (a 401) finishes the request; the
  rest of the upload is discarded by Tornado and the connection closed after the response.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

import tornado.web
from tornado import httputil
from tornado.iostream import StreamClosedError

from bitnet_sdk.server.asgi.memory import note_body
from bitnet_sdk.server.asgi.refusals import problem_body
from bitnet_sdk.server.asgi.security_headers import API_CSP, BASE_HEADERS

__all__ = [
    "ACCESS_LOG_KEY",
    "DEFAULT_BODY_BUFFER",
    "DEFAULT_MAX_BODY_SIZE",
    "ASGIApp",
    "ASGIHandler",
    "BridgeContext",
]

logger = logging.getLogger(__name__)

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]

#: Largest request body accepted by default (model uploads): 20 GiB.
DEFAULT_MAX_BODY_SIZE = 20 * 1024**3
#: Bytes of request body buffered between Tornado and the application before reading pauses.
DEFAULT_BODY_BUFFER = 1024 * 1024
#: Scope key of a dict the application may fill with fields for the request's access log
#: line (a server extension: the same dict object however the scope is copied downstream).
ACCESS_LOG_KEY = "bitnet.access_log"

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
_REFUSAL_HEADERS = (*BASE_HEADERS, ("Content-Security-Policy", API_CSP))


class _AnyMethod:
    """A ``SUPPORTED_METHODS`` that contains every method, so Tornado never answers 405."""

    def __contains__(self, method: object) -> bool:
        return True


@dataclass
class BridgeContext:
    """What every bridged request shares: the application, limits and in-flight requests.

    ``tasks`` holds the application task of each request still running (including work an
    application does after its response, such as Starlette background tasks), so a
    graceful shutdown can wait for them and cancel what is left after its timeout.
    """

    asgi_app: ASGIApp
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    body_buffer: int = DEFAULT_BODY_BUFFER
    root_path: str = ""
    #: Seconds to keep reading (and dropping) an upload answered before it ended.
    linger_timeout: float = 5.0
    #: Lifespan state (ASGI "state" extension); each request gets a shallow copy.
    lifespan_state: dict[str, Any] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _idle: asyncio.Event | None = field(default=None, repr=False)

    def track(self, task: asyncio.Task[None]) -> None:
        """Register a request's application task until it finishes."""
        self.tasks.add(task)
        if self._idle is not None:
            self._idle.clear()
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not self.tasks and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no request is in flight; return False if ``timeout`` expired first."""
        if not self.tasks:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return not self.tasks
        return True

    def cancel_all(self) -> int:
        """Cancel every in-flight application task; return how many were cancelled."""
        tasks = [task for task in self.tasks if not task.done()]
        for task in tasks:
            task.cancel()
        return len(tasks)


class _RequestBody:
    """Body chunks handed from Tornado's reader to the application, bounded in bytes.

    ``feed`` returns a future while more than ``limit`` bytes wait; Tornado awaits it before
    reading the socket again, which is the back-pressure. ``read`` returns ``None`` once
    the body was abandoned (application finished), or once the chunks that arrived before
    the client went away are read (a resumable upload keeps them).
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_closed",
        "_end_waiter",
        "_ended",
        "_gone",
        "_limit",
        "_reader",
        "_writer",
        "total",
    )

    def __init__(self, limit: int) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._limit = limit
        self._ended = False
        self._closed = False
        self._gone = False
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None
        self._end_waiter: asyncio.Future[None] | None = None
        #: Bytes Tornado delivered, kept or not.
        self.total = 0

    def feed(self, chunk: bytes) -> asyncio.Future[None] | None:
        self.total += len(chunk)
        if self._closed or self._gone:
            return None
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        _resolve(self._reader)
        if self._buffered < self._limit:
            return None
        self._writer = asyncio.get_running_loop().create_future()
        return self._writer

    @property
    def ended(self) -> bool:
        """True once Tornado delivered the whole body."""
        return self._ended

    def end(self) -> None:
        self._ended = True
        _resolve(self._reader)
        _resolve(self._end_waiter)

    def hang_up(self) -> None:
        """The client went away: no more chunks, but those already here can still be read
        (at most ``limit`` bytes; :meth:`close` frees them when the application ends)."""
        self._gone = True
        _resolve(self._reader)
        _resolve(self._writer)
        _resolve(self._end_waiter)

    def close(self) -> None:
        self._closed = True
        self._chunks.clear()
        self._buffered = 0
        _resolve(self._reader)
        _resolve(self._writer)
        _resolve(self._end_waiter)

    async def drain(self, timeout: float) -> bool:
        """Discard the rest of the body as it arrives; True if it ended within ``timeout``.

        A server that closes with unread upload data in the socket makes the kernel send a
        reset, and clients that write the whole body before reading lose the response.
        """
        self.close()
        if self._ended:
            return True
        self._end_waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._end_waiter, timeout)
        except TimeoutError:
            return False
        return self._ended

    async def read(self) -> tuple[bytes, bool] | None:
        """Next ``(chunk, more_body)``, or ``None`` when the body was abandoned."""
        while not (self._chunks or self._ended or self._closed or self._gone):
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_future()
            await self._reader
        if self._closed or (self._gone and not self._chunks):
            return None
        if not self._chunks:
            return b"", False
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered < self._limit:
            _resolve(self._writer)
        return chunk, bool(self._chunks) or not self._ended


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


@tornado.web.stream_request_body
class ASGIHandler(tornado.web.RequestHandler):
    """Runs the ASGI application for one request; route it last, as a catch-all (``r".*"``).

    The application task starts in :meth:`prepare`, before the body is read, so it can
    answer early; Tornado then streams the body into :class:`_RequestBody`. The handler
    never finishes the response itself (``_auto_finish`` is off): the application task does.
    """

    SUPPORTED_METHODS = _AnyMethod()  # type: ignore[assignment]

    def initialize(self, context: BridgeContext) -> None:
        self._context = context
        #: The request's HTTP method as the application sees it (also for access logs).
        self.verb = ""
        #: Fields the application notes for this request's access log line (request id,
        #: user, route): shared with it through the scope under :data:`ACCESS_LOG_KEY`.
        self.access: dict[str, Any] = {}
        self._body = _RequestBody(context.body_buffer)
        self._has_body = True
        self._body_done = False
        self._response_started = False
        self._response_complete = False
        self._disconnected = False
        self._disconnect_waiter: asyncio.Future[None] | None = None

    # -- Tornado behaviour switched off -------------------------------------------------

    def set_default_headers(self) -> None:
        # Only the application's headers go out (Tornado's Date is kept unless it sends one).
        self.clear_header("Server")
        self.clear_header("Content-Type")

    def compute_etag(self) -> str | None:
        return None

    def set_etag_header(self) -> None:
        return None

    def check_etag_header(self) -> bool:
        # Else Tornado would turn an application's own ETag + If-None-Match into a 304.
        return False

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        logger.error("bridge handler error", exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Tornado's own error page (an exception outside the application) as a problem.
        self.set_header("Content-Type", "application/problem+json")
        for name, value in _REFUSAL_HEADERS:
            self.set_header(name, value)
        self.finish(json.dumps(problem_body(status_code, self._reason)))

    # -- request life cycle ---------------------------------------------------------------

    def prepare(self) -> None:
        self._auto_finish = False
        self.request.connection.set_max_body_size(self._context.max_body_size)  # type: ignore[union-attr]  # HTTPServer's connections are HTTP1Connection
        scope = self._scope()
        self.verb = scope["method"]
        headers = self.request.headers
        self._has_body = "Transfer-Encoding" in headers or headers.get("Content-Length", "0") != "0"
        if getattr(self, self.verb.lower(), None) != self._body_received:
            # Tornado calls ``getattr(self, method.lower())()`` after the body: a verb such as
            # FINISH or WRITE would call that attribute. The scope keeps the real verb.
            self.request.method = "POST"
        task = asyncio.get_running_loop().create_task(self._run_app(scope))
        self._context.track(task)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._body.feed(chunk)

    def _body_received(self, *args: Any, **kwargs: Any) -> None:
        """Tornado calls the method named after the HTTP verb once the whole body arrived."""
        self._body.end()

    get = head = post = put = patch = delete = options = _body_received

    def __getattr__(self, name: str) -> Any:
        # Reached only for missing attributes: Tornado looks up unknown verbs (PROPFIND) here.
        request = self.__dict__.get("request")
        if request is not None and request.method and name == request.method.lower():
            return self._body_received
        raise AttributeError(name)

    def on_finish(self) -> None:
        note_body(self._body.total)  # large bodies leave freed heap memory: give it back

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._mark_disconnected()

    def _mark_disconnected(self) -> None:
        self._disconnected = True
        self._body.hang_up()
        _resolve(self._disconnect_waiter)

    def _scope(self) -> dict[str, Any]:
        request = self.request
        raw_path = request.path.encode("latin-1")
        root_path = self._context.root_path
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        connection = request.connection
        address = getattr(getattr(connection, "context", None), "address", None)
        client_port = address[1] if isinstance(address, tuple) and len(address) >= 2 else 0
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": request.version.partition("/")[2] or "1.1",
            "method": request.method,
            "scheme": request.protocol,
            "path": root_path + path,
            "raw_path": root_path.encode("utf-8") + raw_path,
            "query_string": request.query.encode("latin-1"),
            "root_path": root_path,
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers.get_all()
            ],
            "client": (request.remote_ip, client_port) if request.remote_ip else None,
            "server": _server_address(connection),
        }
        if self._context.lifespan_state is not None:
            scope["state"] = dict(self._context.lifespan_state)
        scope[ACCESS_LOG_KEY] = self.access
        return scope

    # -- the application's side ------------------------------------------------------------

    async def _receive(self) -> dict[str, Any]:
        if not self._has_body and not self._body_done:
            self._body_done = True  # no need to wait for Tornado to confirm the empty body
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self._body_done:
            item = await self._body.read()
            if item is not None:
                chunk, more_body = item
                self._body_done = not more_body
                return {"type": "http.request", "body": chunk, "more_body": more_body}
            self._body_done = True
        if not (self._disconnected or self._response_complete):
            if self._disconnect_waiter is None:
                self._disconnect_waiter = asyncio.get_running_loop().create_future()
            await self._disconnect_waiter
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self._response_started:
                raise RuntimeError("http.response.start sent twice")
            self._start_response(message)
        elif kind == "http.response.body":
            if not self._response_started:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self._response_complete:
                raise RuntimeError("http.response.body sent after the response completed")
            if self._disconnected:
                return
            try:
                await self._write_body(message)
            except StreamClosedError:
                self._mark_disconnected()
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r}")

    def _start_response(self, message: MutableMapping[str, Any]) -> None:
        self._response_started = True
        headers = httputil.HTTPHeaders()
        for name, value in message.get("headers", ()):
            headers.add(name.decode("latin-1"), value.decode("latin-1"))
        if "Date" not in headers and "Date" in self._headers:
            headers["Date"] = self._headers["Date"]
        self.set_status(int(message["status"]))
        self._headers = headers

    async def _write_body(self, message: MutableMapping[str, Any]) -> None:
        body = message.get("body", b"")
        if body:
            self.write(body if isinstance(body, bytes) else bytes(body))
        if message.get("more_body", False):
            if body or not self._headers_written:
                await self.flush()
            return
        self._response_complete = True
        _resolve(self._disconnect_waiter)
        if not self._body.ended:
            if self._has_body:
                await self._linger()
            else:
                # Tornado marks even an empty request read a few loop turns after prepare();
                # finishing before that makes it close the connection (no keep-alive).
                await self._body.drain(self._context.linger_timeout)
        await self.finish()

    async def _linger(self) -> None:
        """Answered before the upload ended (a 401): send the response, then read and drop
        the rest of the body for up to ``linger_timeout`` before Tornado closes."""
        status = self._status_code
        if not self._headers_written and status not in (204, 304) and status >= 200:
            if "Content-Length" not in self._headers:
                self.set_header("Content-Length", sum(map(len, self._write_buffer)))
        await self.flush()
        if self._disconnected:
            return
        if not await self._body.drain(self._context.linger_timeout):
            logger.debug(
                "upload not finished %.1f s after the response; closing",
                self._context.linger_timeout,
            )

    async def _run_app(self, scope: dict[str, Any]) -> None:
        try:
            await self._context.asgi_app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            self._abort("cancelled")
            raise
        except Exception:
            if self._disconnected:
                logger.debug("ASGI application ended after client disconnect", exc_info=True)
            else:
                logger.exception("ASGI application raised (%s %s)", scope["method"], scope["path"])
            await self._answer_error()
        else:
            if not self._response_complete and not self._disconnected:
                logger.error("ASGI application returned without completing its response")
                await self._answer_error()
        finally:
            self._body.close()

    async def _answer_error(self) -> None:
        """500 if nothing was sent yet; else cut the connection (the response is truncated)."""
        if self._response_started or self._disconnected or self._finished:
            self._abort("application error")
            return
        headers = [(b"content-type", b"application/problem+json"),
                   *((k.lower().encode(), v.encode()) for k, v in _REFUSAL_HEADERS)]
        self._start_response({"status": 500, "headers": headers})
        body = problem_body(500, "The server failed to handle this request.")
        try:
            await self._write_body({"body": json.dumps(body).encode()})
        except StreamClosedError:  # the client left meanwhile
            self._mark_disconnected()

    def _abort(self, reason: str) -> None:
        if self._response_complete and self._finished:
            return
        logger.debug("closing connection: %s", reason)
        self._response_complete = True
        _resolve(self._disconnect_waiter)
        self.request.connection.close()  # type: ignore[union-attr]  # HTTPServer's connections are HTTP1Connection


def _server_address(connection: Any) -> tuple[str, int | None] | None:
    stream = getattr(connection, "stream", None)
    sock = getattr(stream, "socket", None)
    if sock is None:
        return None
    name = sock.getsockname()
    if isinstance(name, tuple):
        return name[0], name[1]
    return str(name), None
