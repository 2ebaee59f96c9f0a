"""Open WebSockets per user, counted in the database: a connection cap for every process.

Each authenticated socket is a :class:`~bitnet_sdk.store.models.LiveSocket` row. Opening
one counts the user's live rows and inserts its own in one transaction under a per-user
lock (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so processes
sharing the database (``bitnet serve --processes N``, several hosts) share one cap.

A row lives :data:`LEASE_S` seconds unless its process renews it (:func:`renew`, every
few seconds for all of a process's sockets); a process killed with its sockets stops
holding places once their rows expire, and the next opening for the user deletes them.
All functions are blocking (database).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from bitnet_sdk.store.db import advisory_lock, write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.models import LiveSocket

__all__ = ["LEASE_S", "RENEW_S", "close", "open_socket", "renew"]

#: Seconds a socket's row counts without renewal.
LEASE_S = 60.0
#: How often a process renews its sockets' rows.
RENEW_S = 15.0


def open_socket(user_id: str, cap: int, *, now: float | None = None) -> str | None:
    """The new socket's row id, or None when the user already holds ``cap`` live sockets."""
    at = utcnow(now)
    S = LiveSocket
    with write_transaction():
        advisory_lock(f"sockets:{user_id}")
        S.delete().where(S.user == user_id, S.expires_at <= at).execute()
        if S.select().where(S.user == user_id).count() >= cap:
            return None
        row = S.create(user=user_id, created_at=at, expires_at=at + timedelta(seconds=LEASE_S))
    return str(row.id)


def renew(socket_ids: Iterable[str], *, now: float | None = None) -> None:
    """Extend the lease of a process's open sockets."""
    ids = list(socket_ids)
    if ids:
        S = LiveSocket
        S.update(expires_at=utcnow(now) + timedelta(seconds=LEASE_S)).where(
            S.id.in_(ids)).execute()


def close(socket_id: str) -> None:
    """A socket closed: its place is free at once."""
    LiveSocket.delete().where(LiveSocket.id == socket_id).execute()
