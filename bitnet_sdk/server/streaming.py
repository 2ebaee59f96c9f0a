"""Responses for streams whose client may go away: SSE token streams and late answers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["EventStream", "Unheard"]


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
