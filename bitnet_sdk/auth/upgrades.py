"""Tier change requests: a customer asks, an administrator approves or rejects.

One pending request per user at a time. Approval moves the user to the new
tier (scopes follow, :func:`~bitnet_sdk.auth.users.set_tier`) in the same
transaction that closes the request; deciding twice is refused.
"""

from __future__ import annotations

import peewee

from bitnet_sdk.auth.errors import NotFound, UpgradeConflict
from bitnet_sdk.auth.users import known_tiers, set_tier
from bitnet_sdk.config import Settings
from bitnet_sdk.store.db import write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.models import UpgradeRequest, User

__all__ = [
    "approve_upgrade",
    "get_upgrade_request",
    "list_upgrade_requests",
    "reject_upgrade",
    "request_upgrade",
    "upgrade_request_query",
]


def request_upgrade(
    user: User, to_tier: str, settings: Settings, *, reason: str = "", now: float | None = None
) -> UpgradeRequest:
    """File a request to move ``user`` to ``to_tier``.

    ``ValueError`` for an unknown tier; :class:`UpgradeConflict` when the user
    is already on it or has a request pending.
    """
    if to_tier not in known_tiers(settings):
        raise ValueError(f"unknown tier {to_tier!r}")
    with write_transaction():
        current = User.get_by_id(user.id)
        if current.tier == to_tier:
            raise UpgradeConflict(f"already on tier {to_tier}")
        pending = UpgradeRequest.select().where(
            UpgradeRequest.user == user.id, UpgradeRequest.status == "pending"
        )
        if pending.exists():
            raise UpgradeConflict("an upgrade request is already pending")
        return UpgradeRequest.create(
            user=user.id,
            from_tier=current.tier,
            to_tier=to_tier,
            reason=reason.strip()[:2000],
            created_at=utcnow(now),
        )


def get_upgrade_request(request_id: str) -> UpgradeRequest:
    request = UpgradeRequest.get_or_none(UpgradeRequest.id == request_id)
    if request is None:
        raise NotFound(f"no upgrade request {request_id}")
    return request


def upgrade_request_query(*, status: str | None = None) -> peewee.ModelSelect:
    """Requests of every account with their account joined (unordered, for :func:`paginate`)."""
    query = UpgradeRequest.select(UpgradeRequest, User).join(User, on=UpgradeRequest.user == User.id)
    if status is not None:
        query = query.where(UpgradeRequest.status == status)
    return query


def list_upgrade_requests(
    *, status: str | None = None, user: User | None = None, limit: int = 100
) -> list[UpgradeRequest]:
    """Requests, oldest first (the order an administrator works through them)."""
    query = UpgradeRequest.select()
    if status is not None:
        query = query.where(UpgradeRequest.status == status)
    if user is not None:
        query = query.where(UpgradeRequest.user == user.id)
    return list(query.order_by(UpgradeRequest.created_at, UpgradeRequest.id).limit(limit))


def _decide(
    request_id: str,
    status: str,
    decided_by: User | None,
    settings: Settings | None,
    now: float | None,
) -> UpgradeRequest:
    with write_transaction():
        request = get_upgrade_request(request_id)
        if request.status != "pending":
            raise UpgradeConflict(f"request {request_id} is already {request.status}")
        if status == "approved":
            set_tier(User.get_by_id(request.user_id), request.to_tier, settings=settings)
        request.status = status
        request.decided_at = utcnow(now)
        request.decided_by = decided_by.id if decided_by is not None else None
        request.save()
    return request


def approve_upgrade(
    request_id: str,
    *,
    decided_by: User | None = None,
    settings: Settings | None = None,
    now: float | None = None,
) -> UpgradeRequest:
    """Approve and apply the tier change (``decided_by=None``: the operator's CLI)."""
    return _decide(request_id, "approved", decided_by, settings, now)


def reject_upgrade(
    request_id: str, *, decided_by: User | None = None, now: float | None = None
) -> UpgradeRequest:
    return _decide(request_id, "rejected", decided_by, None, now)
