"""Clients that may go away: a guard that notices, SSE token streams and late answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from bitnet_sdk.server.problems import PROBLEM_MEDIA_TYPE
from bitnet_sdk.service.errors import ApiError

__all__ = ["ClientGone", "Disconnect", "EventStream", "Unheard", "client_gone_response"]

T = TypeVar("T")
_background: set[asyncio.Task[Any]] = set()


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


class Disconnect:
    """Races a request's work against its client's disconnect (one watcher per request).

    ``await Disconnect(receive).guard(work)`` is ``work``'s result, or raises
    :class:`ClientGone` after cancelling ``work`` when the client left first. The watcher
    is never cancelled: it awaits the server's shared disconnect future, which cancelling
    would break for every other listener. It returns once the client has gone or the
    response is complete.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._watcher: asyncio.Task[None] | None = None

    async def guard(self, work: Awaitable[T]) -> T:
        task = asyncio.ensure_future(work)
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._gone())
            _background.add(self._watcher)
            self._watcher.add_done_callback(_background.discard)
        try:
            await asyncio.wait({task, self._watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            # The client has gone: nobody hears how the abandoned work ended.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise ClientGone
        return task.result()

    async def _gone(self) -> None:
        with contextlib.suppress(Exception):
            while (await self._receive())["type"] != "http.disconnect":
                pass


class EventStream(StreamingResponse):
    """A streaming response that calls ``on_close`` however it ends (done, error, disconnect).

    Starlette does not close the body iterator when the client goes away; the
    generation behind it must stop anyway, so the iterator is closed here.
    """

    def __init__(self, content: AsyncIterator[str], *,
                 on_close: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except OSError:  # the client went away mid-stream: nothing left to tell it
            pass
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            await self._on_close()


class Unheard(Response):
    """The answer to a client that has gone: sending it must not raise."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(OSError):
            await super().__call__(scope, receive, send)


def client_gone_response() -> Unheard:
    """The answer to a request whose client hung up: nobody reads it, but the access log,
    the metrics and the usage record see its status (a problem, like any other error)."""
    error = ApiError(400, "Client Closed Request", "The client closed the connection.",
                     slug="client-closed")
    return Unheard(json.dumps(error.problem()), status_code=error.status,
                   media_type=PROBLEM_MEDIA_TYPE)
