"""Keyset pagination with opaque cursors, for every list operation.

Lists are ordered newest first by ``(created_at, id)``. A cursor names the last
item of a page; the next page is everything strictly after it in that order:

    created_at < t  OR  (created_at = t AND id < i)

so pages never skip or repeat rows when rows are added or removed between
requests (an offset would), and each page costs one index range scan however
deep the client has walked. The cursor is ``urlsafe_b64(JSON {"t": µs, "i": id})``
without padding: opaque to clients, stable across server versions, and free of
anything secret (a forged cursor only moves the position within what the caller
may see anyway, because callers apply their visibility filter to the query).

Generic over peewee models with a ``created_at`` :class:`UTCDateTimeField` and
a string or integer primary key (models, jobs, …).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

import peewee

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Cursor", "InvalidCursor", "Page", "paginate"]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_CURSOR_CHARS = 512

T = TypeVar("T", bound=peewee.Model)


class InvalidCursor(ValueError):
    """The cursor was not made by :meth:`Cursor.encode` (the API answers 400)."""


@dataclass(frozen=True)
class Cursor:
    """A position in a newest-first list: the ``(created_at, id)`` of the last item seen."""

    created_at: datetime
    id: str | int

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        raw = json.dumps({"t": micros, "i": self.id}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a cursor; :class:`InvalidCursor` for anything :meth:`encode` cannot produce."""
        if not token or len(token) > _MAX_CURSOR_CHARS:
            raise InvalidCursor("cursor is empty or too long")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursor("cursor is not one this server issued") from exc
        if not isinstance(data, dict) or set(data) != {"t", "i"}:
            raise InvalidCursor("cursor is not one this server issued")
        micros, ident = data["t"], data["i"]
        if (not isinstance(micros, int) or isinstance(micros, bool)
                or not isinstance(ident, (str, int)) or isinstance(ident, bool)):
            raise InvalidCursor("cursor is not one this server issued")
        try:
            created_at = _EPOCH + timedelta(microseconds=micros)
        except OverflowError as exc:
            raise InvalidCursor("cursor time is out of range") from exc
        return cls(created_at, ident)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and the cursor of the next page (``None`` on the last page)."""

    items: list[T]
    next_cursor: str | None


def paginate(
    query: peewee.ModelSelect,
    model: type[T],
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[T]:
    """Run ``query`` (already filtered to what the caller may see) for one page, newest first.

    ``query`` must select ``model`` rows and carry no ORDER BY or LIMIT of its
    own. Raises :class:`InvalidCursor` for a malformed ``cursor`` and
    ``ValueError`` for a ``limit`` outside 1…``MAX_LIMIT``.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be within 1..{MAX_LIMIT}, got {limit}")
    created: Any = model.created_at
    key: Any = model._meta.primary_key
    if cursor is not None:
        after = Cursor.decode(cursor)
        if isinstance(after.id, int) != isinstance(key, peewee.IntegerField):
            raise InvalidCursor("cursor belongs to another list")
        query = query.where((created < after.created_at)
                            | ((created == after.created_at) & (key < after.id)))
    rows = list(query.order_by(created.desc(), key.desc()).limit(limit + 1))
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    last = rows[-1]
    return Page(rows, Cursor(last.created_at, getattr(last, key.name)).encode())
