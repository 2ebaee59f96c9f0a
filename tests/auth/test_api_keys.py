"""API keys: shown once, stored hashed, looked up by prefix, scoped, revocable."""

from __future__ import annotations

from datetime import timedelta

import peewee
import pytest

from bitnet_sdk.auth import (
    AccountDisabled,
    InvalidApiKey,
    NotFound,
    api_key_info,
    create_api_key,
    create_user,
    list_api_keys,
    looks_like_api_key,
    revoke_api_key,
    set_disabled,
    verify_api_key,
)
from bitnet_sdk.config import Settings
from bitnet_sdk.store import ApiKey, User
from bitnet_sdk.store.fields import utcnow

from .conftest import T0


@pytest.fixture
def user(db: peewee.Database) -> User:
    return create_user("keys@example.com", None)


def test_create_and_verify(user: User, settings: Settings) -> None:
    record, key = create_api_key(user, "ci", ["models:read", "inference"], settings, now=T0)
    assert record.id.startswith("key_")
    assert key.startswith(record.prefix + "_")
    assert record.prefix.startswith("bn_")
    assert looks_like_api_key(key)
    secret = key[len(record.prefix) + 1 :]
    assert len(secret) >= 40
    stored = ApiKey.get_by_id(record.id)
    assert secret not in stored.secret_hash and key not in stored.secret_hash
    owner, scopes = verify_api_key(key, settings, now=T0 + 1)
    assert owner.id == user.id
    assert scopes == ["models:read", "inference"]


def test_default_scopes_are_the_users(user: User, settings: Settings) -> None:
    _, key = create_api_key(user, "all", None, settings)
    assert verify_api_key(key, settings)[1] == user.scopes


def test_scopes_beyond_the_user_refused(user: User, settings: Settings) -> None:
    with pytest.raises(ValueError, match="does not hold"):
        create_api_key(user, "sneaky", ["admin"], settings)
    with pytest.raises(ValueError, match="unknown"):
        create_api_key(user, "typo", ["inferenc"], settings)
    with pytest.raises(ValueError, match="name"):
        create_api_key(user, "  ", None, settings)


def test_wrong_or_malformed_keys(user: User, settings: Settings) -> None:
    record, key = create_api_key(user, "k", None, settings)
    last = key[-1]
    for bad in (
        key[:-1] + ("A" if last != "A" else "B"),
        record.prefix + "_",
        record.prefix,
        "bn_",
        "",
        "Bearer " + key,
        key.replace("bn_", "xx_", 1),
        key + "x" * 300,
    ):
        with pytest.raises(InvalidApiKey):
            verify_api_key(bad, settings)
    verify_api_key(key, settings)


def test_key_depends_on_server_secret(user: User, settings: Settings) -> None:
    _, key = create_api_key(user, "k", None, settings)
    with pytest.raises(InvalidApiKey):
        verify_api_key(key, settings.with_(jwt_secret="rotated-" + "y" * 48))


def test_revoke(user: User, settings: Settings) -> None:
    record, key = create_api_key(user, "k", None, settings)
    other = create_user("other@example.com", None)
    with pytest.raises(NotFound):
        revoke_api_key(record.id, user=other)
    revoked = revoke_api_key(record.id, user=user, now=T0)
    assert revoked.revoked_at.timestamp() == T0
    assert revoke_api_key(record.id, user=user, now=T0 + 9).revoked_at.timestamp() == T0
    with pytest.raises(InvalidApiKey, match="revoked"):
        verify_api_key(key, settings)
    with pytest.raises(NotFound):
        revoke_api_key("key_missing")


def test_expiry(user: User, settings: Settings) -> None:
    _, key = create_api_key(user, "k", None, settings, expires_at=utcnow(T0 + 100))
    verify_api_key(key, settings, now=T0 + 99)
    with pytest.raises(InvalidApiKey, match="expired"):
        verify_api_key(key, settings, now=T0 + 100)


def test_effective_scopes_follow_user(user: User, settings: Settings) -> None:
    _, key = create_api_key(user, "k", ["models:read", "quantize"], settings)
    User.update(scopes=["models:read"]).where(User.id == user.id).execute()
    assert verify_api_key(key, settings)[1] == ["models:read"]


def test_disabled_owner(user: User, settings: Settings) -> None:
    _, key = create_api_key(user, "k", None, settings)
    set_disabled(user, True)
    with pytest.raises(AccountDisabled):
        verify_api_key(key, settings)


def test_last_used_is_throttled(user: User, settings: Settings) -> None:
    record, key = create_api_key(user, "k", None, settings, now=T0)
    assert ApiKey.get_by_id(record.id).last_used_at is None
    verify_api_key(key, settings, now=T0 + 10)
    verify_api_key(key, settings, now=T0 + 30)
    assert ApiKey.get_by_id(record.id).last_used_at.timestamp() == T0 + 10
    verify_api_key(key, settings, now=T0 + 75)
    assert ApiKey.get_by_id(record.id).last_used_at.timestamp() == T0 + 75


def test_list_keys(user: User, settings: Settings) -> None:
    a, _ = create_api_key(user, "a", None, settings, now=T0)
    create_api_key(user, "b", None, settings, now=T0 + 1)
    other = create_user("x@example.com", None)
    create_api_key(other, "c", None, settings)
    revoke_api_key(a.id, user=user)
    assert [k.name for k in list_api_keys(user)] == ["b"]
    assert [k.name for k in list_api_keys(user, include_revoked=True)] == ["b", "a"]
    assert all(k.created_at <= utcnow(T0) + timedelta(seconds=1) for k in list_api_keys(user))


def test_api_key_info_hides_the_hash(user: User, settings: Settings) -> None:
    record, key = create_api_key(user, "shown", ["inference"], settings, now=T0)
    info = api_key_info(ApiKey.get_by_id(record.id))
    assert info == {
        "id": record.id,
        "name": "shown",
        "prefix": record.prefix,
        "scopes": ["inference"],
        "created_at": "2024-01-01T00:00:00+00:00",
        "last_used_at": None,
        "expires_at": None,
        "revoked_at": None,
    }
    assert key[len(record.prefix) + 1 :] not in str(info)
