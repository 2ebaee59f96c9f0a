"""Monthly token and compute-unit quotas, reserved at admission.

A check of the month's usage followed, much later, by the record of what a
request used lets concurrent requests overshoot a quota by everything they
generate. So an inference request *reserves* its worst case before it is
handed to a model's scheduler: ``prompt tokens + max_tokens`` (bounded by the
model's context) and the compute units that implies. :func:`reserve` checks
and inserts the reservation in one transaction under the user's quota lock
(an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), and
:func:`bitnet_sdk.service.accounting.usage.month_usage` counts live
reservations like usage records, so the sum of what is used and what is held
never passes the limit.

When the request ends (finished, cancelled, failed, client gone) its
reservation is *settled*: the usage record is written and the reservation
deleted in one transaction under the same lock (:func:`release`), so the
amount is counted exactly once at every moment. An HTTP request's record is
written by the server's metering after the response; until then
:func:`give_back` lowers the reservation to the actual usage. The ``n``
choices of one request reserve together (one row, all or none), and each
choice settles its share.

A reservation carries ``expires_at`` (``request_timeout_s`` + :data:`GRACE_S`
after it was made: no request computes longer than its timeout). If its
process is killed, the row stops counting when it expires, and the user's
next reservation deletes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bitnet_sdk.config import Settings
from bitnet_sdk.service.accounting import usage
from bitnet_sdk.store.db import advisory_lock, write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.models import QuotaReservation

__all__ = ["GRACE_S", "Reservation", "extend", "give_back", "release", "reserve", "settle"]

#: Seconds a reservation outlives the request timeout (the usage record is written after it).
GRACE_S = 120.0


@dataclass(frozen=True)
class Reservation:
    """Quota held for one request: ``tokens`` and ``compute_units`` of ``user_id``'s month."""

    id: str
    user_id: str
    tokens: int
    compute_units: float


def _lock(user_id: str) -> None:
    advisory_lock(f"quota:{user_id}:inference")


def reserve(user_id: str, tier: str, tokens: int, compute_units: float, settings: Settings, *,
            request_id: str | None = None, now: float | None = None) -> Reservation:
    """Hold ``tokens`` and ``compute_units`` of the user's month, or raise
    :class:`~bitnet_sdk.service.accounting.usage.QuotaExceeded` (nothing held).

    Blocking (database). Expired reservations of the user are deleted first.
    """
    if tokens < 0 or compute_units < 0:
        raise ValueError("a reservation cannot be negative")
    at = utcnow(now)
    with write_transaction():
        _lock(user_id)
        R = QuotaReservation
        R.delete().where(R.user == user_id, R.expires_at <= at).execute()
        _check(user_id, tier, tokens, compute_units, settings, now)
        ttl = timedelta(seconds=settings.request_timeout_s + GRACE_S)
        row = R.create(user=user_id, tokens=int(tokens), compute_units=float(compute_units),
                       created_at=at, expires_at=at + ttl, request_id=request_id)
    return Reservation(str(row.id), user_id, int(tokens), float(compute_units))


def extend(reservation: Reservation, tier: str, tokens: int, compute_units: float,
           settings: Settings, *, now: float | None = None) -> None:
    """Hold ``tokens`` and ``compute_units`` more in ``reservation`` (a group member needing
    more than its share), or raise ``QuotaExceeded`` (nothing changes)."""
    with write_transaction():
        _lock(reservation.user_id)
        _check(reservation.user_id, tier, tokens, compute_units, settings, now)
        R = QuotaReservation
        R.update(tokens=R.tokens + int(tokens), compute_units=R.compute_units + compute_units
                 ).where(R.id == reservation.id).execute()


def _check(user_id: str, tier: str, tokens: int, compute_units: float, settings: Settings,
           now: float | None) -> None:
    """``QuotaExceeded`` unless the amounts fit beside the month's usage and live holds."""
    used = usage.month_usage(user_id, now=now)
    resets_at = usage.month_bounds(now)[1]
    for kind, amount in (("inference_tokens", tokens), ("compute_units", compute_units)):
        limit = usage.quota_limit(settings, tier, kind)
        if used[kind] + amount > limit:
            raise usage.QuotaExceeded(usage.QuotaStatus(kind, used[kind], limit, amount, resets_at))


def give_back(reservation: Reservation, tokens: int, compute_units: float) -> None:
    """Lower a reservation by what its request did not use (it stays, however small, until
    :func:`release` deletes it with the record that carries the usage)."""
    with write_transaction():
        _lock(reservation.user_id)
        _lower(reservation, tokens, compute_units)


def settle(reservation: Reservation, tokens: int, compute_units: float,
           record: Callable[[], object]) -> None:
    """Write ``record`` (the usage of a request holding ``tokens`` and ``compute_units`` of
    the reservation) and lower the reservation by that hold in one transaction; the row is
    deleted once nothing is left (the last of a group's requests)."""
    R = QuotaReservation
    with write_transaction():
        _lock(reservation.user_id)
        record()
        _lower(reservation, tokens, compute_units)
        R.delete().where(R.id == reservation.id, R.tokens <= 0,
                         R.compute_units <= _NOTHING).execute()


#: Compute units below this are float dust: a reservation holding no more is empty.
_NOTHING = 1e-9


def _lower(reservation: Reservation, tokens: int, compute_units: float) -> None:
    R = QuotaReservation
    R.update(tokens=R.tokens - max(0, int(tokens)),
             compute_units=R.compute_units - max(0.0, float(compute_units))
             ).where(R.id == reservation.id).execute()


def release(user_id: str, reservation_ids: Sequence[str],
            record: Callable[[], object] | None = None) -> None:
    """Delete reservations, after writing ``record`` (the usage they became) in the same
    transaction under the user's quota lock: the amount is never counted twice or not at all."""
    R = QuotaReservation
    with write_transaction():
        _lock(user_id)
        if record is not None:
            record()
        if reservation_ids:
            R.delete().where(R.id.in_(list(reservation_ids))).execute()
