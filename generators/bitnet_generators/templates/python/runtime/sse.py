"""Server-Sent Events (WHATWG HTML, "event stream interpretation"), parsed line by line as
the response arrives, never buffered whole."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from .errors import ApiError

__all__ = ["AsyncEventStream", "EventStream", "SSEDecoder", "SSEMessage", "ServerEvent"]

T = TypeVar("T")


@dataclass(frozen=True)
class SSEMessage:
    """One dispatched event: ``event`` defaults to ``message``; ``id`` is the last id seen."""

    event: str
    data: str
    id: str
    retry: int | None = None


@dataclass(frozen=True)
class ServerEvent(Generic[T]):
    """A typed event of a stream: its name, id and decoded ``data``."""

    event: str
    data: T
    id: str | None = None


class SSEDecoder:
    """Feed lines (without their line ending); complete events come back from :meth:`line`."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._last_id = ""
        self._retry: int | None = None
        self._started = False

    def line(self, line: str) -> SSEMessage | None:
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")
        if not line:
            message = SSEMessage(self._event or "message", "\n".join(self._data), self._last_id, self._retry)
            dispatch = bool(self._data)
            self._data, self._event = [], ""
            return message if dispatch else None
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


Decoders = Mapping[str, Callable[[Any], Any]]


def _typed(message: SSEMessage, decoders: Decoders, errors: frozenset[str],
           response: httpx.Response) -> ServerEvent[Any] | None:
    if message.event in errors:
        raise ApiError.from_problem(json.loads(message.data), headers=response.headers)
    decode = decoders.get(message.event)
    if decode is None:
        return None  # an event this client does not know: skipped
    return ServerEvent(message.event, decode(json.loads(message.data)), message.id or None)


class EventStream(Generic[T]):
    """Iterate typed events as they arrive; use it as a context manager (or call
    :meth:`close`) so that stopping early closes the connection and the server stops."""

    def __init__(self, response: httpx.Response, decoders: Decoders, errors: frozenset[str]) -> None:
        self._response, self._decoders, self._errors = response, decoders, errors

    def __iter__(self) -> Iterator[ServerEvent[T]]:
        decoder = SSEDecoder()
        try:
            for line in self._response.iter_lines():
                message = decoder.line(line)
                if message is not None:
                    event = _typed(message, self._decoders, self._errors, self._response)
                    if event is not None:
                        yield event
        finally:
            self.close()

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> EventStream[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncEventStream(Generic[T]):
    """The ``async for`` / ``async with`` twin of :class:`EventStream`."""

    def __init__(self, response: httpx.Response, decoders: Decoders, errors: frozenset[str]) -> None:
        self._response, self._decoders, self._errors = response, decoders, errors

    async def __aiter__(self) -> AsyncIterator[ServerEvent[T]]:
        decoder = SSEDecoder()
        try:
            async for line in self._response.aiter_lines():
                message = decoder.line(line)
                if message is not None:
                    event = _typed(message, self._decoders, self._errors, self._response)
                    if event is not None:
                        yield event
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()

    async def __aenter__(self) -> AsyncEventStream[T]:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
