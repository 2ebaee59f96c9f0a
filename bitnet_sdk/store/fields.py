"""Column types that behave the same on SQLite and PostgreSQL.

``JSONField`` stores JSON as text on every database. peewee's own JSON fields
differ per backend (and per peewee version); a text column keeps the schema,
the migrations and the values identical everywhere. Nothing in the service
queries inside JSON documents, so nothing is lost.

``UTCDateTimeField`` stores naive UTC in the column (``TIMESTAMP`` on
PostgreSQL, ISO text on SQLite, both sort correctly) and hands back aware UTC
datetimes, so callers never mix local and UTC time.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import peewee

__all__ = ["JSONField", "UTCDateTimeField", "epoch_to_utc", "utc_to_epoch", "utcnow"]


class JSONField(peewee.TextField):
    """Any JSON-serialisable value, stored as compact JSON text (``None`` stays SQL NULL)."""

    if TYPE_CHECKING:  # peewee is untyped: on an instance the field reads and takes values
        def __get__(self, instance: Any, owner: Any) -> Any: ...
        def __set__(self, instance: Any, value: Any) -> None: ...

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, peewee.Node):
            return value
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return json.loads(value)


class UTCDateTimeField(peewee.DateTimeField):
    """A timestamp that goes in as any aware datetime and comes out as aware UTC.

    Naive datetimes given to the field are taken to be UTC already.
    """

    if TYPE_CHECKING:  # peewee is untyped: on an instance the field reads and takes values
        def __get__(self, instance: Any, owner: Any) -> Any: ...
        def __set__(self, instance: Any, value: Any) -> None: ...

    def db_value(self, value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value: Any) -> Any:
        value = super().python_value(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def utcnow(now: float | None = None) -> datetime:
    """Aware UTC datetime for ``now`` (epoch seconds; the wall clock when ``None``).

    Every time-dependent function in the store, auth and service layers takes
    ``now`` so tests can drive the clock.
    """
    if now is None:
        return datetime.now(timezone.utc)
    return datetime.fromtimestamp(now, timezone.utc)


def epoch_to_utc(seconds: float) -> datetime:
    """Aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(seconds, timezone.utc)


def utc_to_epoch(value: datetime) -> float:
    """Epoch seconds from a datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()
