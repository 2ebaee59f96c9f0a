"""The per-account storage quota: bytes of model files an account owns, per tier.

Usage is the sum of ``size_bytes`` of the account's models that hold a file
(``ready``, or ``deleting`` until the file is gone); the limit is the tier's
``TierLimits.storage_bytes``. Models owned by the server (owner NULL) count
against nothing.

Enforcement is atomic: :func:`reserve` runs inside the write transaction that
stores a model's file and row (the registry's ``attach_file`` and
``register_file``), serialised per owner (an advisory lock on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), so concurrent uploads cannot together pass the
limit: the row that the transaction writes is the reservation.
:func:`remaining` is for cheap early refusals before a large body is read.
Blocking (database): call from worker threads.
"""

from __future__ import annotations

from typing import Any

import peewee

from bitnet_sdk.config import Settings
from bitnet_sdk.store import ModelRecord, User, advisory_lock

__all__ = ["QUOTA_NAME", "StorageQuotaExceeded", "check", "limit_for", "remaining", "reserve",
           "used_by"]

#: The quota's name in ``GET /account/limits`` and in problems.
QUOTA_NAME = "storage_bytes"
_WITH_FILE = ("ready", "deleting")


class StorageQuotaExceeded(Exception):
    """Storing ``requested`` more bytes would take the owner past ``limit`` (answered 413)."""

    def __init__(self, used: int, limit: int, requested: int) -> None:
        super().__init__(f"Storage quota exceeded: {used} of {limit} bytes used, "
                         f"{requested} more requested; delete models to make room.")
        self.used, self.limit, self.requested = used, limit, requested

    def as_problem_detail(self) -> dict[str, Any]:
        return {"quota": QUOTA_NAME, "used": self.used, "limit": self.limit,
                "requested": self.requested}


def limit_for(settings: Settings, tier: str) -> int:
    """The tier's storage limit (unknown tiers get the smallest configured one)."""
    limits = settings.tiers.get(tier)
    if limits is None:
        return min(t.storage_bytes for t in settings.tiers.values())
    return limits.storage_bytes


def used_by(owner_id: str) -> int:
    """Bytes of model files ``owner_id`` owns now."""
    total = (ModelRecord.select(peewee.fn.COALESCE(peewee.fn.SUM(ModelRecord.size_bytes), 0))
             .where(ModelRecord.owner == owner_id, ModelRecord.status.in_(_WITH_FILE)).scalar())
    return int(total or 0)


def _limit_of(owner_id: str, settings: Settings) -> int:
    tier = User.select(User.tier).where(User.id == owner_id).scalar()
    return limit_for(settings, str(tier or ""))


def remaining(owner_id: str | None, settings: Settings) -> int | None:
    """Bytes ``owner_id`` may still store (None: no quota, a model of the server)."""
    if owner_id is None:
        return None
    return max(0, _limit_of(owner_id, settings) - used_by(owner_id))


def check(owner_id: str | None, size: int, settings: Settings) -> None:
    """:class:`StorageQuotaExceeded` unless ``size`` more bytes fit now (no lock: an early
    refusal; only :func:`reserve` decides)."""
    if owner_id is None:
        return
    used, limit = used_by(owner_id), _limit_of(owner_id, settings)
    if used + size > limit:
        raise StorageQuotaExceeded(used, limit, size)


def reserve(owner_id: str | None, size: int, settings: Settings) -> None:
    """Inside the write transaction storing ``size`` bytes for ``owner_id``: refuse
    (:class:`StorageQuotaExceeded`) unless they fit; the lock holds until commit."""
    if owner_id is None:
        return
    advisory_lock(f"storage:{owner_id}")
    check(owner_id, size, settings)
