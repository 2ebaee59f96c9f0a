"""Accounts: creation, login, rehash on login, tiers, the first administrator."""

from __future__ import annotations

import peewee
import pytest
from argon2 import PasswordHasher

from bitnet_sdk.auth import (
    AccountDisabled,
    EmailTaken,
    InvalidCredentials,
    WeakPassword,
    authenticate,
    create_user,
    ensure_admin,
    get_user_by_email,
    list_users,
    set_disabled,
    set_password,
    set_tier,
)
from bitnet_sdk.auth.scopes import SCOPES, default_scopes
from bitnet_sdk.auth.users import normalize_email
from bitnet_sdk.config import Settings, TierLimits
from bitnet_sdk.store import User

from .conftest import T0


def test_create_user_normalises_and_defaults(db: peewee.Database, hasher: PasswordHasher) -> None:
    user = create_user("  Alice@Example.COM ", "s3cret-pass", hasher=hasher, now=T0)
    assert user.id.startswith("usr_")
    stored = User.get_by_id(user.id)
    assert stored.email == "alice@example.com"
    assert stored.tier == "developer"
    assert stored.scopes == default_scopes("developer")
    assert "admin" not in stored.scopes
    assert stored.created_at.timestamp() == T0
    assert stored.password_hash.startswith("$argon2id$")


def test_duplicate_email_differs_only_in_case(db: peewee.Database, hasher: PasswordHasher) -> None:
    create_user("bob@example.com", "password-1", hasher=hasher)
    with pytest.raises(EmailTaken):
        create_user("BOB@example.com", "password-2", hasher=hasher)
    assert User.select().count() == 1


@pytest.mark.parametrize("email", ["", "no-at-sign", "@example.com", "a@", "a@b@c", "a b@c.d"])
def test_bad_emails_refused(email: str) -> None:
    with pytest.raises(ValueError):
        normalize_email(email)


def test_bad_tier_scope_and_password_refused(db: peewee.Database, hasher: PasswordHasher) -> None:
    with pytest.raises(ValueError, match="tier"):
        create_user("t@example.com", "password-1", tier="platinum", hasher=hasher)
    with pytest.raises(ValueError, match="unknown scopes"):
        create_user("t@example.com", "password-1", scopes=["root"], hasher=hasher)
    with pytest.raises(WeakPassword):
        create_user("t@example.com", "short", hasher=hasher)
    assert User.select().count() == 0


def test_tiers_come_from_settings(db: peewee.Database, settings: Settings) -> None:
    custom = settings.with_(tiers={"starter": TierLimits(10, 1, 100, 10)})
    user = create_user("s@example.com", None, tier="starter", settings=custom)
    assert user.tier == "starter"
    with pytest.raises(ValueError):
        create_user("d@example.com", None, tier="developer", settings=custom)


def test_authenticate(db: peewee.Database, hasher: PasswordHasher) -> None:
    created = create_user("carol@example.com", "right-password", hasher=hasher)
    user = authenticate("CAROL@example.com", "right-password", hasher=hasher, now=T0 + 5)
    assert user.id == created.id
    assert user.last_login_at.timestamp() == T0 + 5
    with pytest.raises(InvalidCredentials):
        authenticate("carol@example.com", "wrong-password", hasher=hasher)
    with pytest.raises(InvalidCredentials):
        authenticate("nobody@example.com", "right-password", hasher=hasher)
    with pytest.raises(InvalidCredentials):
        authenticate("not an email", "right-password", hasher=hasher)


def test_passwordless_account_cannot_log_in(db: peewee.Database, hasher: PasswordHasher) -> None:
    create_user("robot@example.com", None)
    with pytest.raises(InvalidCredentials):
        authenticate("robot@example.com", "anything-at-all", hasher=hasher)


def test_disabled_account_reported_only_with_right_password(
    db: peewee.Database, hasher: PasswordHasher
) -> None:
    user = create_user("dave@example.com", "right-password", hasher=hasher)
    set_disabled(user, True)
    with pytest.raises(InvalidCredentials):
        authenticate("dave@example.com", "wrong-password", hasher=hasher)
    with pytest.raises(AccountDisabled):
        authenticate("dave@example.com", "right-password", hasher=hasher)
    set_disabled(user, False)
    assert authenticate("dave@example.com", "right-password", hasher=hasher).id == user.id


def test_login_rehashes_when_parameters_change(db: peewee.Database, hasher: PasswordHasher) -> None:
    create_user("erin@example.com", "upgrade-me-please", hasher=hasher)
    old_hash = get_user_by_email("erin@example.com").password_hash
    stronger = PasswordHasher(time_cost=hasher.time_cost + 1, memory_cost=hasher.memory_cost, parallelism=1)
    authenticate("erin@example.com", "upgrade-me-please", hasher=stronger)
    new_hash = get_user_by_email("erin@example.com").password_hash
    assert new_hash != old_hash
    assert f"t={stronger.time_cost}" in new_hash
    # Logging in again with the same parameters leaves the hash alone.
    authenticate("erin@example.com", "upgrade-me-please", hasher=stronger)
    assert get_user_by_email("erin@example.com").password_hash == new_hash


def test_set_password(db: peewee.Database, hasher: PasswordHasher) -> None:
    user = create_user("frank@example.com", "first-password", hasher=hasher)
    set_password(user, "second-password", hasher=hasher)
    with pytest.raises(InvalidCredentials):
        authenticate("frank@example.com", "first-password", hasher=hasher)
    authenticate("frank@example.com", "second-password", hasher=hasher)


def test_set_tier_updates_scopes(db: peewee.Database) -> None:
    admin = create_user("boss@example.com", None, is_admin=True)
    set_tier(admin, "team")
    stored = User.get_by_id(admin.id)
    assert stored.tier == "team"
    assert stored.scopes == default_scopes("team", is_admin=True)
    assert "admin" in stored.scopes


def test_list_users_in_creation_order(db: peewee.Database) -> None:
    for i in range(3):
        create_user(f"u{i}@example.com", None, now=T0 + i)
    assert [u.email for u in list_users()] == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert [u.email for u in list_users(limit=1, offset=1)] == ["u1@example.com"]


def test_ensure_admin_creates_once(db: peewee.Database, settings: Settings, hasher: PasswordHasher) -> None:
    first = ensure_admin(settings, hasher=hasher)
    assert first is not None
    email, password = first
    admin = authenticate(email, password, hasher=hasher)
    assert admin.is_admin
    assert set(admin.scopes) == set(SCOPES)
    assert ensure_admin(settings, hasher=hasher) is None
    assert User.select().where(User.is_admin == True).count() == 1  # noqa: E712


def test_ensure_admin_skips_when_an_admin_exists(
    db: peewee.Database, settings: Settings, hasher: PasswordHasher
) -> None:
    create_user("ops@example.com", None, is_admin=True)
    assert ensure_admin(settings, hasher=hasher) is None
    assert get_user_by_email("admin@localhost") is None


def test_user_query_filters_combine_and_match_email_literally(db, settings, hasher):
    from bitnet_sdk.auth import user_query

    for email, tier in (("a_b@example.com", "team"), ("axb@example.com", "team"),
                        ("100%@example.com", "developer")):
        create_user(email, None, tier=tier, settings=settings, hasher=hasher)
    set_disabled(get_user_by_email("axb@example.com"), True)

    def emails(**filters) -> list[str]:
        return sorted(u.email for u in user_query(**filters))

    assert emails(email_contains="A_B") == ["a_b@example.com"]  # "_" is not a wildcard
    assert emails(email_contains="%") == ["100%@example.com"]
    assert emails(tier="team") == ["a_b@example.com", "axb@example.com"]
    assert emails(tier="team", disabled=False) == ["a_b@example.com"]
    assert emails(email_contains="example", disabled=True) == ["axb@example.com"]
