"""ASGI lifespan protocol: run an application's start-up before serving, its shutdown after.

Why: Connexion/Starlette apps open databases, load models and start workers in their
lifespan; a server that serves requests after a failed start-up serves a broken app. So a
start-up failure raises :class:`LifespanStartupError` (the caller exits non-zero) before any
socket is opened.

Modes: ``"on"`` (any error is fatal), ``"off"`` (skip lifespan) and ``"auto"`` (default): an
application that raises *before it asked for the start-up event* does not speak lifespan
(for example a raw app asserting ``scope["type"] == "http"``) and is served without it; any
later error, or a ``lifespan.startup.failed`` message, is fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import Any, Literal

from bitnet_sdk.server.asgi.bridge import ASGI_VERSION, ASGIApp

__all__ = ["Lifespan", "LifespanMode", "LifespanShutdownError", "LifespanStartupError"]

logger = logging.getLogger(__name__)

LifespanMode = Literal["auto", "on", "off"]


class LifespanStartupError(RuntimeError):
    """The application's start-up failed; the server must not serve it."""


class LifespanShutdownError(RuntimeError):
    """The application reported (or raised) an error while shutting down."""


class Lifespan:
    """Drives one application's ``lifespan`` scope: ``await startup()`` … ``await shutdown()``.

    ``state`` is the ASGI lifespan-state dict: what the application stores in it during
    start-up is copied into every request scope by the bridge.
    """

    def __init__(self, asgi_app: ASGIApp, mode: LifespanMode = "auto") -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"lifespan mode must be 'auto', 'on' or 'off', not {mode!r}")
        self.asgi_app = asgi_app
        self.mode: LifespanMode = mode
        self.state: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._asked_startup = False
        self._started = False
        self._shutdown_requested: asyncio.Event | None = None
        self._startup_done: asyncio.Future[None] | None = None
        self._shutdown_done: asyncio.Future[None] | None = None

    @property
    def supported(self) -> bool:
        """True once the application completed start-up through the lifespan protocol."""
        return self._started

    async def startup(self) -> None:
        """Run the application's start-up; raise :class:`LifespanStartupError` if it fails."""
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        self._shutdown_requested = asyncio.Event()
        self._startup_done = loop.create_future()
        self._shutdown_done = loop.create_future()
        self._task = loop.create_task(self._main(), name="asgi-lifespan")
        await asyncio.wait({self._startup_done, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._startup_done.done():
            try:
                self._startup_done.result()
            except LifespanStartupError as failed:
                error = await _finish(self._task, timeout=5.0)
                raise failed from error
            self._started = True
            return
        error = self._task.exception()
        if error is None:
            logger.info("ASGI application returned from lifespan without starting; continuing")
        elif self.mode == "on" or self._asked_startup:
            raise LifespanStartupError(f"application start-up raised {error!r}") from error
        else:
            logger.info("ASGI 'lifespan' protocol appears unsupported (%r); continuing", error)

    async def shutdown(self, timeout: float | None = 30.0) -> None:
        """Run the application's shutdown (if start-up ran); raise on a reported failure.

        Waits at most ``timeout`` seconds, then cancels the lifespan task.
        """
        task, done = self._task, self._shutdown_done
        if task is None or done is None or self._shutdown_requested is None or not self._started:
            return
        self._task = None
        self._shutdown_requested.set()
        finished, _ = await asyncio.wait(
            {done, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        error = await _finish(task, timeout=5.0 if finished else 0.0)
        if not finished:
            raise LifespanShutdownError(f"application shutdown did not finish in {timeout} s")
        if done.done():
            done.result()  # raises LifespanShutdownError on shutdown.failed
        elif error is not None:
            raise LifespanShutdownError(f"application shutdown raised {error!r}") from error

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        await self.asgi_app(scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        if not self._asked_startup:
            self._asked_startup = True
            return {"type": "lifespan.startup"}
        assert self._shutdown_requested is not None
        await self._shutdown_requested.wait()
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        reason = message.get("message", "")
        if kind == "lifespan.startup.complete":
            _settle(self._startup_done)
        elif kind == "lifespan.startup.failed":
            _settle(self._startup_done, LifespanStartupError(reason or "start-up failed"))
        elif kind == "lifespan.shutdown.complete":
            _settle(self._shutdown_done)
        elif kind == "lifespan.shutdown.failed":
            _settle(self._shutdown_done, LifespanShutdownError(reason or "shutdown failed"))
        else:
            raise RuntimeError(f"unexpected lifespan message type {kind!r}")


async def _finish(task: asyncio.Task[None], timeout: float) -> BaseException | None:
    """Let the lifespan task end (cancel it after ``timeout``); return its exception, if any."""
    if not task.done():
        await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    if task.cancelled():
        return None
    return task.exception()


def _settle(future: asyncio.Future[None] | None, error: BaseException | None = None) -> None:
    if future is None or future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
