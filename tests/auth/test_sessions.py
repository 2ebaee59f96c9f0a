"""Refresh-token rotation, reuse detection, logout."""

from __future__ import annotations

import threading

import peewee
import pytest

from bitnet_sdk.auth import (
    AccountDisabled,
    InvalidToken,
    RefreshTokenReused,
    TokenExpired,
    TokenRevoked,
    create_user,
    logout,
    refresh_session,
    set_disabled,
    start_session,
    verify_access_token,
)
from bitnet_sdk.config import Settings
from bitnet_sdk.store import RefreshToken, User

from .conftest import T0


@pytest.fixture
def user(db: peewee.Database) -> User:
    return create_user("sess@example.com", None)


def test_start_session(user: User, settings: Settings) -> None:
    pair = start_session(user, settings, now=T0)
    assert pair.refresh_token.startswith("bnr_")
    assert pair.token_type == "Bearer"
    assert pair.scope.split() == user.scopes
    claims = verify_access_token(pair.access_token, settings, now=T0)
    assert claims["sid"] == pair.session_id
    row = RefreshToken.get()
    assert row.family_id == pair.session_id
    # Only a hash of the secret is stored.
    secret = pair.refresh_token.split(".", 1)[1]
    assert secret not in row.token_hash
    assert row.expires_at.timestamp() == T0 + settings.refresh_token_ttl_s


def test_refresh_rotates(user: User, settings: Settings) -> None:
    first = start_session(user, settings, now=T0)
    second = refresh_session(first.refresh_token, settings, now=T0 + 60)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.session_id == first.session_id
    old_jti = first.refresh_token[4:].split(".")[0]
    new_jti = second.refresh_token[4:].split(".")[0]
    old = RefreshToken.get_by_id(old_jti)
    assert old.used_at.timestamp() == T0 + 60
    assert old.replaced_by == new_jti
    third = refresh_session(second.refresh_token, settings, now=T0 + 120)
    verify_access_token(third.access_token, settings, now=T0 + 120)


def test_reuse_revokes_whole_family(user: User, settings: Settings) -> None:
    first = start_session(user, settings, now=T0)
    second = refresh_session(first.refresh_token, settings, now=T0 + 1)
    unrelated = start_session(user, settings, now=T0)
    with pytest.raises(RefreshTokenReused):
        refresh_session(first.refresh_token, settings, now=T0 + 2)
    # The legitimate-looking newer token is dead too, and so is its access token.
    with pytest.raises(TokenRevoked):
        refresh_session(second.refresh_token, settings, now=T0 + 3)
    with pytest.raises(TokenRevoked):
        verify_access_token(second.access_token, settings, now=T0 + 3)
    # Other sessions of the same user are untouched.
    verify_access_token(unrelated.access_token, settings, now=T0 + 3)
    refresh_session(unrelated.refresh_token, settings, now=T0 + 3)


def test_concurrent_refresh_only_one_wins(user: User, settings: Settings, db: peewee.Database) -> None:
    pair = start_session(user, settings, now=T0)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def use() -> None:
        try:
            barrier.wait()
            refresh_session(pair.refresh_token, settings, now=T0 + 1)
            outcomes.append("ok")
        except RefreshTokenReused:
            outcomes.append("reused")
        finally:
            db.close()

    threads = [threading.Thread(target=use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "reused"]
    assert RefreshToken.select().where(RefreshToken.revoked_at.is_null()).count() == 0


def test_expired_refresh(user: User, settings: Settings) -> None:
    pair = start_session(user, settings, now=T0)
    with pytest.raises(TokenExpired):
        refresh_session(pair.refresh_token, settings, now=T0 + settings.refresh_token_ttl_s)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "x",
        lambda t: t.replace("bnr_", "bnx_"),
        lambda t: t.split(".")[0],
        lambda t: "bnr_unknownjti.secret",
        lambda t: "",
    ],
)
def test_bad_refresh_tokens(user: User, settings: Settings, mangle) -> None:
    pair = start_session(user, settings, now=T0)
    with pytest.raises(InvalidToken):
        refresh_session(mangle(pair.refresh_token), settings, now=T0 + 1)
    # A failed attempt does not consume the real token.
    refresh_session(pair.refresh_token, settings, now=T0 + 2)


def test_disabled_user_cannot_refresh(user: User, settings: Settings) -> None:
    pair = start_session(user, settings, now=T0)
    set_disabled(user, True)
    with pytest.raises(AccountDisabled):
        refresh_session(pair.refresh_token, settings, now=T0 + 1)
    with pytest.raises(AccountDisabled):
        start_session(User.get_by_id(user.id), settings, now=T0 + 1)
    set_disabled(user, False)
    with pytest.raises(TokenRevoked):
        refresh_session(pair.refresh_token, settings, now=T0 + 2)


def test_logout_with_access_token(user: User, settings: Settings) -> None:
    pair = start_session(user, settings, now=T0)
    claims = verify_access_token(pair.access_token, settings, now=T0)
    logout(settings, access_claims=claims, now=T0 + 1)
    with pytest.raises(TokenRevoked):
        verify_access_token(pair.access_token, settings, now=T0 + 2)
    with pytest.raises(TokenRevoked):
        refresh_session(pair.refresh_token, settings, now=T0 + 2)


def test_logout_with_refresh_token(user: User, settings: Settings) -> None:
    pair = start_session(user, settings, now=T0)
    logout(settings, refresh_token=pair.refresh_token, now=T0 + 1)
    with pytest.raises(TokenRevoked):
        refresh_session(pair.refresh_token, settings, now=T0 + 2)
    with pytest.raises(TokenRevoked):
        verify_access_token(pair.access_token, settings, now=T0 + 2)
    with pytest.raises(InvalidToken):
        logout(settings, refresh_token="bnr_nope.nope", now=T0 + 3)


def test_refresh_reflects_current_scopes(user: User, settings: Settings) -> None:
    pair = start_session(user, settings, now=T0)
    User.update(scopes=["models:read"]).where(User.id == user.id).execute()
    new = refresh_session(pair.refresh_token, settings, now=T0 + 1)
    assert verify_access_token(new.access_token, settings, now=T0 + 1)["scope"] == "models:read"


def test_the_session_grant_is_stored_and_bounds_every_refresh(user: User, settings: Settings) -> None:
    pair = start_session(user, settings, scopes=["inference"], now=T0)
    assert RefreshToken.get().scopes == ["inference"]
    with pytest.raises(ValueError):  # more than the grant: refused before consuming
        refresh_session(pair.refresh_token, settings, scopes=["inference", "models:read"],
                        now=T0 + 1)
    new = refresh_session(pair.refresh_token, settings, now=T0 + 2)
    assert new.scope == "inference"
    assert [r.scopes for r in RefreshToken.select()] == [["inference"], ["inference"]]


def test_a_session_without_a_recorded_grant_cannot_be_refreshed(user: User,
                                                                 settings: Settings) -> None:
    pair = start_session(user, settings, now=T0)
    RefreshToken.update(scopes=None).execute()  # as stored before the grant was recorded
    with pytest.raises(InvalidToken):
        refresh_session(pair.refresh_token, settings, now=T0 + 1)
    assert RefreshToken.get().used_at is None
