"""Run a real server for tests: the ASGI app behind the Tornado bridge on a free loopback port.

Usage (any synchronous test; real sockets, real HTTP)::

    from bitnet_sdk.server.asgi.testing import ServerThread

    with ServerThread(app, websocket_routes=[(r"/v1/inference/ws", MyWSHandler)]) as server:
        response = httpx.get(server.url + "/v1/health")
        ws_url = server.ws_url("/v1/inference/ws")

The server runs on its own asyncio loop in a daemon thread; entering the block runs the
app's lifespan start-up (its failure re-raises here), leaving it stops gracefully (its
shutdown errors re-raise here). In ``async`` code on one loop, use
``async with BridgeServer(app) as server:`` from :mod:`bitnet_sdk.server.asgi.tornado_app`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from bitnet_sdk.server.asgi.bridge import ASGIApp
from bitnet_sdk.server.asgi.tornado_app import BridgeServer, Route

__all__ = ["ServerThread"]

T = TypeVar("T")


class ServerThread:
    """A :class:`BridgeServer` on ``127.0.0.1:<free port>`` in a background thread.

    ``options`` go to :class:`BridgeServer` (``lifespan``, ``max_body_size``,
    ``shutdown_timeout`` (default 5 s here), ...). :meth:`start`/:meth:`stop` or use it as
    a context manager. :meth:`call` runs a coroutine on the server's loop.
    """

    def __init__(
        self,
        asgi_app: ASGIApp,
        *,
        websocket_routes: Sequence[Route] = (),
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        options.setdefault("shutdown_timeout", 5.0)
        self._args = (asgi_app, host, 0)
        self._options = dict(options, websocket_routes=websocket_routes)
        self._startup_timeout = startup_timeout
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: BridgeServer | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return self._running().url

    def ws_url(self, path: str = "") -> str:
        """``ws://127.0.0.1:<port><path>``."""
        return "ws" + self.url[len("http") :] + path

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (for ``call_soon_threadsafe`` and the like)."""
        self._running()
        assert self._loop is not None
        return self._loop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ServerThread:
        """Start the thread; return once listening. Re-raises start-up errors."""
        if self._thread is not None:
            raise RuntimeError("ServerThread already started")
        self._thread = threading.Thread(target=self._run, name="bitnet-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout):
            raise TimeoutError(f"server did not start within {self._startup_timeout} s")
        if self._error is not None:
            self._thread.join()
            error, self._error = self._error, None
            raise error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully (in-flight requests finish) and join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"server did not stop within {timeout} s")
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _running(self) -> BridgeServer:
        if self.server is None or self._thread is None:
            raise RuntimeError("ServerThread is not running")
        return self.server

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # handed to the test's thread
            self._error = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        server = BridgeServer(*self._args, **self._options)
        await server.start()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.server = server
        self._ready.set()
        await self._stop.wait()
        await server.stop()
