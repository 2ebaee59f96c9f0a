"""The Tornado server around an ASGI application: routes, lifespan, listening, graceful stop.

One port serves HTTP, SSE and WebSocket: Tornado ``WebSocketHandler`` routes come first, the
ASGI bridge (:class:`~bitnet_sdk.server.asgi.bridge.ASGIHandler`) catches every other path.
Start-up order: ASGI lifespan start-up (a failure raises before any socket is opened) →
listen → serve. Stop order (SIGINT/SIGTERM or :meth:`BridgeServer.stop`): stop accepting →
let in-flight requests finish within ``shutdown_timeout`` (then cancel them) → close
WebSockets (1001) and idle connections → lifespan shutdown.

Entry points: :func:`serve` (blocking, for the CLI), :func:`serve_async` and
:class:`BridgeServer` (``async with BridgeServer(app) as server: ...``). For tests in another
thread see :class:`bitnet_sdk.server.asgi.testing.ServerThread`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import tornado.web
import tornado.websocket
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from bitnet_sdk.server.asgi.bridge import (
    DEFAULT_BODY_BUFFER,
    DEFAULT_MAX_BODY_SIZE,
    ASGIApp,
    ASGIHandler,
    BridgeContext,
)
from bitnet_sdk.server.asgi.lifespan import Lifespan, LifespanMode
from bitnet_sdk.server.asgi.refusals import ProblemHTTPServer

__all__ = ["BridgeApplication", "BridgeServer", "listen", "make_app", "serve", "serve_async"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("bitnet_sdk.server.access")

#: A Tornado route: ``(pattern, handler_class)`` or ``(pattern, handler_class, kwargs)``.
Route = tuple[Any, ...]


class BridgeApplication(tornado.web.Application):
    """A Tornado application whose catch-all route is the ASGI bridge.

    ``bridge`` holds the shared :class:`BridgeContext` (in-flight requests) and
    ``websockets`` the open WebSocket handlers, both used by a graceful stop.
    """

    bridge: BridgeContext
    websockets: weakref.WeakSet[tornado.websocket.WebSocketHandler]


def make_app(
    asgi_app: ASGIApp,
    *,
    websocket_routes: Sequence[Route] = (),
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    body_buffer: int = DEFAULT_BODY_BUFFER,
    root_path: str = "",
    linger_timeout: float = 5.0,
    lifespan_state: dict[str, Any] | None = None,
    **settings: Any,
) -> BridgeApplication:
    """Build the Tornado application: ``websocket_routes`` first, then the ASGI catch-all.

    ``websocket_routes`` are ordinary Tornado routes (usually ``WebSocketHandler``
    subclasses); Connexion never sees them, so they must do their own auth and limits.
    Each ``WebSocketHandler`` class is subclassed to register itself for the graceful
    stop (``isinstance`` still holds). ``linger_timeout``: how long an upload answered
    before it ended (a 401) is still read and dropped, so the client sees the answer and
    not a connection reset. ``settings`` go to ``tornado.web.Application``.
    """
    websockets: weakref.WeakSet[tornado.websocket.WebSocketHandler] = weakref.WeakSet()
    context = BridgeContext(
        asgi_app=asgi_app,
        max_body_size=max_body_size,
        body_buffer=body_buffer,
        root_path=root_path,
        linger_timeout=linger_timeout,
        lifespan_state=lifespan_state,
    )
    routes = [_tracked_route(route, websockets) for route in websocket_routes]
    routes.append((r".*", ASGIHandler, {"context": context}))
    settings.setdefault("log_function", _log_request)
    app = BridgeApplication(routes, **settings)
    app.bridge = context
    app.websockets = websockets
    return app


def _tracked_route(
    route: Route, registry: weakref.WeakSet[tornado.websocket.WebSocketHandler]
) -> Route:
    pattern, handler, *rest = route
    if not (isinstance(handler, type) and issubclass(handler, tornado.websocket.WebSocketHandler)):
        return route

    def prepare(self: tornado.websocket.WebSocketHandler) -> Any:
        registry.add(self)
        return handler.prepare(self)

    tracked = type(
        handler.__name__, (handler,), {"prepare": prepare, "__module__": handler.__module__}
    )
    return (pattern, tracked, *rest)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """One access line per request: method, path (never the query: it may hold secrets),
    status, latency, and what the application noted (request id, user id, route)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    request = handler.request
    method = getattr(handler, "verb", "") or request.method
    status = handler.get_status()
    latency_ms = round(1000.0 * request.request_time(), 1)
    noted = {k: v for k, v in (getattr(handler, "access", None) or {}).items()
             if k in _ACCESS_FIELDS}
    tail = " ".join(str(noted[k]) for k in _ACCESS_FIELDS if k in noted)
    access_logger.info(
        "%s %s %d %.1fms%s", method, request.path, status, latency_ms, f" {tail}" if tail else "",
        extra={"method": method, "path": request.path, "status": status,
               "latency_ms": latency_ms, "client": request.remote_ip, **noted},
    )


#: Noted fields an access line carries, in the order the text line shows them.
_ACCESS_FIELDS = ("request_id", "user_id", "route")


class BridgeServer:
    """One listening Tornado server for an ASGI application, on the running asyncio loop.

    ``port=0`` picks a free port (read :attr:`port` / :attr:`url` after :meth:`start`).
    ``sockets``: already listening sockets to serve instead of binding ``host:port`` (bound
    early by :func:`listen` so a busy port is found before anything else is done, or shared by
    several processes, see :mod:`bitnet_sdk.server.processes`).
    ``lifespan`` is ``"auto"``, ``"on"`` or ``"off"`` (see :mod:`bitnet_sdk.server.asgi.lifespan`);
    a start-up failure raises :class:`~bitnet_sdk.server.asgi.lifespan.LifespanStartupError`.
    """

    def __init__(
        self,
        asgi_app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        websocket_routes: Sequence[Route] = (),
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        lifespan: LifespanMode = "auto",
        shutdown_timeout: float = 30.0,
        root_path: str = "",
        xheaders: bool = False,
        sockets: Sequence[socket.socket] = (),
        **settings: Any,
    ) -> None:
        self.host = host
        self._sockets = list(sockets)
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self.lifespan = Lifespan(asgi_app, lifespan)
        self.application = make_app(
            asgi_app,
            websocket_routes=websocket_routes,
            max_body_size=max_body_size,
            root_path=root_path,
            lifespan_state=self.lifespan.state,
            **settings,
        )
        self._xheaders = xheaders
        self._max_body_size = max_body_size
        self._http: HTTPServer | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the listening server (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Run lifespan start-up, then listen. Raises on start-up failure or a busy port."""
        await self.lifespan.startup()
        try:
            sockets = self._sockets or bind_sockets(self.port, self.host)
        except BaseException as error:
            _close_abandoned_sockets(error)
            await self.lifespan.shutdown(self.shutdown_timeout)
            raise
        self.port = sockets[0].getsockname()[1]
        # Its own refusals of malformed requests (bad headers, a body over the limit) are
        # problem+json too, not Tornado's bare 400.
        self._http = ProblemHTTPServer(
            self.application, xheaders=self._xheaders, max_body_size=self._max_body_size
        )
        self._http.add_sockets(sockets)
        logger.info("serving on %s", self.url)

    async def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: stop accepting, drain in-flight requests, close, lifespan shutdown.

        Requests still running after ``timeout`` (default ``shutdown_timeout``) are cancelled.
        """
        timeout = self.shutdown_timeout if timeout is None else timeout
        http, self._http = self._http, None
        if http is not None:
            http.stop()
            bridge = self.application.bridge
            if not await bridge.wait_idle(timeout):
                logger.warning(
                    "cancelling %d requests still running after %.1f s",
                    bridge.cancel_all(),
                    timeout,
                )
                await bridge.wait_idle(5.0)
            for handler in list(self.application.websockets):
                if handler.ws_connection is not None and not handler.ws_connection.is_closing():
                    handler.close(1001, "server shutting down")
            try:
                await asyncio.wait_for(http.close_all_connections(), 5.0)
            except TimeoutError:
                logger.warning("some connections did not close within 5 s")
        await self.lifespan.shutdown(timeout)
        logger.info("server stopped")

    async def __aenter__(self) -> BridgeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def listen(host: str, port: int) -> list[socket.socket]:
    """Bind listening sockets for ``host:port`` now (``OSError`` when the port is busy)."""
    try:
        return bind_sockets(port, host)
    except BaseException as error:
        _close_abandoned_sockets(error)
        raise


def _close_abandoned_sockets(error: BaseException) -> None:
    """Close the socket ``bind_sockets`` leaves open when ``bind`` fails (port in use).

    Tornado does not close it; it would linger until garbage collection (ResourceWarning).
    """
    tb = error.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("sock")
        if isinstance(candidate, socket.socket):
            candidate.close()
        tb = tb.tb_next


async def serve_async(
    asgi_app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    websocket_routes: Sequence[Route] = (),
    on_started: Callable[[BridgeServer], None] | None = None,
    stop_event: asyncio.Event | None = None,
    install_signal_handlers: bool = True,
    **options: Any,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop_event``), then stop gracefully.

    ``on_started(server)`` runs once listening (``server.url`` is known). ``options`` go
    to :class:`BridgeServer` (``max_body_size``, ``lifespan``, ``shutdown_timeout``, ...).
    A second signal during the graceful stop cancels the remaining requests at once.
    """
    server = BridgeServer(asgi_app, host, port, websocket_routes=websocket_routes, **options)
    stop = stop_event or asyncio.Event()
    await server.start()
    signals = _install_signal_handlers(stop, server) if install_signal_handlers else []
    try:
        if on_started is not None:
            on_started(server)
        await stop.wait()
        logger.info("shutting down")
        await server.stop()
    finally:
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.remove_signal_handler(sig)


def _install_signal_handlers(stop: asyncio.Event, server: BridgeServer) -> list[int]:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            logger.warning("second signal: cancelling in-flight requests")
            server.application.bridge.cancel_all()
        stop.set()

    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError, ValueError):  # not main thread / Windows
            continue
        installed.append(sig)
    return installed


def serve(
    asgi_app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    websocket_routes: Sequence[Route] = (),
    on_started: Callable[[BridgeServer], None] | None = None,
    use_uvloop: bool | None = None,
    **options: Any,
) -> None:
    """Blocking entry point (the CLI's ``serve``): run :func:`serve_async` on a new loop.

    ``use_uvloop=None`` uses uvloop when it is installed. Start-up errors propagate
    (the process exits non-zero); returns after a graceful stop.
    """
    main = serve_async(
        asgi_app, host, port, websocket_routes=websocket_routes, on_started=on_started, **options
    )
    if use_uvloop is not False:
        try:
            import uvloop
        except ImportError:
            if use_uvloop:
                raise
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
