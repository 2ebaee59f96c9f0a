"""Tier upgrade requests: file, approve, reject, conflicts."""

from __future__ import annotations

import peewee
import pytest

from bitnet_sdk.auth import (
    NotFound,
    UpgradeConflict,
    approve_upgrade,
    create_user,
    list_upgrade_requests,
    reject_upgrade,
    request_upgrade,
)
from bitnet_sdk.config import Settings
from bitnet_sdk.store import User

from .conftest import T0


@pytest.fixture
def user(db: peewee.Database) -> User:
    return create_user("cust@example.com", None)


def test_request_and_approve(user: User, settings: Settings) -> None:
    admin = create_user("admin@example.com", None, is_admin=True)
    req = request_upgrade(user, "team", settings, reason=" need more ", now=T0)
    assert (req.from_tier, req.to_tier, req.status, req.reason) == ("developer", "team", "pending", "need more")
    assert req.id.startswith("upg_")
    done = approve_upgrade(req.id, decided_by=admin, settings=settings, now=T0 + 5)
    assert done.status == "approved"
    assert done.decided_at.timestamp() == T0 + 5
    assert done.decided_by_id == admin.id
    assert User.get_by_id(user.id).tier == "team"
    with pytest.raises(UpgradeConflict):
        reject_upgrade(req.id)


def test_reject_leaves_tier(user: User, settings: Settings) -> None:
    req = request_upgrade(user, "enterprise", settings)
    assert reject_upgrade(req.id).status == "rejected"
    assert User.get_by_id(user.id).tier == "developer"
    # A new request may follow a decided one.
    request_upgrade(user, "enterprise", settings)


def test_conflicts_and_errors(user: User, settings: Settings) -> None:
    with pytest.raises(UpgradeConflict, match="already on"):
        request_upgrade(user, "developer", settings)
    with pytest.raises(ValueError):
        request_upgrade(user, "gold", settings)
    request_upgrade(user, "team", settings)
    with pytest.raises(UpgradeConflict, match="pending"):
        request_upgrade(user, "enterprise", settings)
    with pytest.raises(NotFound):
        approve_upgrade("upg_missing")


def test_listing(user: User, settings: Settings) -> None:
    other = create_user("other@example.com", None)
    r1 = request_upgrade(user, "team", settings, now=T0)
    r2 = request_upgrade(other, "enterprise", settings, now=T0 + 1)
    reject_upgrade(r2.id)
    assert [r.id for r in list_upgrade_requests()] == [r1.id, r2.id]
    assert [r.id for r in list_upgrade_requests(status="pending")] == [r1.id]
    assert [r.id for r in list_upgrade_requests(user=other)] == [r2.id]


def test_upgrade_request_query_joins_the_account_and_filters_by_status(db, settings, hasher):
    from bitnet_sdk.auth import upgrade_request_query

    ada = create_user("ada@example.com", None, settings=settings, hasher=hasher)
    bob = create_user("bob@example.com", None, settings=settings, hasher=hasher)
    first = request_upgrade(ada, "team", settings)
    request_upgrade(bob, "enterprise", settings)
    approve_upgrade(first.id, settings=settings)

    pending = list(upgrade_request_query(status="pending"))
    assert [(r.user.email, r.to_tier) for r in pending] == [("bob@example.com", "enterprise")]
    assert sorted(r.status for r in upgrade_request_query()) == ["approved", "pending"]
