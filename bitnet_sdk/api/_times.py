"""Date-times from clients: parsed, made UTC, and kept inside the range the server computes in.

``datetime`` stops at years 1 and 9999, so a client's ``9999-12-31T23:00:00-05:00``
overflows when converted to UTC, and ``0001-01-01`` when a handler subtracts a default
range or adds a month: each was a 500. Every date-time a client sends goes through
:func:`client_time`, which refuses anything outside :data:`EARLIEST` .. :data:`LATEST` (422 naming the field: the
value is a valid date-time, just not one the server computes with), so arithmetic of a
few years either side stays valid. A value that is no date-time at all is a 400.
"""

from __future__ import annotations

from datetime import datetime, timezone

from bitnet_sdk.service.errors import bad_request, unprocessable

__all__ = ["EARLIEST", "LATEST", "client_time"]

#: The first and last instants a client may name (the spec's date-time fields say so too).
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)


def client_time(name: str, value: str) -> datetime:
    """``value`` as an aware UTC datetime; a 400/422 problem naming ``name`` if not usable."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        detail = f"{name!r} is not an RFC 3339 date-time: {value[:64]!r}"
        raise bad_request(detail, errors=[{"field": name, "message": detail}]) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        when = when.astimezone(timezone.utc)
    except OverflowError:  # past year 1 or 9999 once in UTC
        raise _out_of_range(name, value) from None
    if not EARLIEST <= when < LATEST:
        raise _out_of_range(name, value)
    return when


def _out_of_range(name: str, value: str) -> Exception:
    detail = (f"{name!r} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC): "
              f"{value[:64]!r}")
    return unprocessable(detail, errors=[{"field": name, "message": detail}])
