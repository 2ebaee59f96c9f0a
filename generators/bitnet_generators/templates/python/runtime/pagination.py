"""Cursor pagination: every item of every page, fetching the next page only when needed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

__all__ = ["aiterate", "iterate"]

P = TypeVar("P")
T = TypeVar("T")


def _cursor(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def iterate(fetch: Callable[[Any], P], items: Callable[[P], list[T]], next_cursor: Callable[[P], Any],
            start: Any) -> Iterator[T]:
    """Yield the items of each page; ``fetch`` gets the cursor to send (``start`` first)."""
    cursor = start
    while True:
        page = fetch(cursor)
        yield from items(page)
        following = _cursor(next_cursor(page))
        if following is None or following == cursor:
            return
        cursor = following


async def aiterate(fetch: Callable[[Any], Awaitable[P]], items: Callable[[P], list[T]],
                   next_cursor: Callable[[P], Any], start: Any) -> AsyncIterator[T]:
    """The ``async for`` twin of :func:`iterate`."""
    cursor = start
    while True:
        page = await fetch(cursor)
        for item in items(page):
            yield item
        following = _cursor(next_cursor(page))
        if following is None or following == cursor:
            return
        cursor = following
