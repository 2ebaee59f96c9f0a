"""Deleting expired lease rows a little at a time, whoever they belong to.

Quota reservations (``quota_reservations``) and live WebSockets (``live_sockets``) are
leases: a row carries ``expires_at`` and stops counting once it passes, which is what
keeps a killed process from holding a user's quota or sockets for ever. A user's own
expired rows are deleted when that user reserves or connects again; a user who never
comes back would leave them for ever. So every write of a lease row also deletes up to
:data:`SWEEP_ROWS` expired rows of *any* user (:func:`sweep_expired`): each write adds
at most one row and removes up to :data:`SWEEP_ROWS` dead ones, so the dead rows never
pile up, and no write does more than a bounded amount of extra work.

Expired rows count for nothing (every reader filters on ``expires_at``), so deleting
another user's needs none of that user's locks. On PostgreSQL the rows are picked with
``FOR UPDATE SKIP LOCKED``: two sweeps never wait for each other (nor deadlock), and a
row another transaction is deleting is simply left to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import peewee

from bitnet_sdk.store.db import is_postgres

__all__ = ["SWEEP_ROWS", "sweep_expired"]

#: Expired rows of other users one write deletes at most.
SWEEP_ROWS = 32


def sweep_expired(model: type[peewee.Model], at: datetime, limit: int = SWEEP_ROWS) -> int:
    """Delete up to ``limit`` rows of ``model`` whose ``expires_at`` is ``at`` or earlier;
    the number deleted. Call it inside the write transaction of the lease being written."""
    table: Any = model  # its fields are class attributes the type checker does not see
    chosen = table.select(table.id).where(table.expires_at <= at).limit(limit)
    if is_postgres():
        chosen = chosen.for_update(skip_locked=True)
    return int(table.delete().where(table.id.in_(chosen)).execute())
