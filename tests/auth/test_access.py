"""Access tokens: claims, pinned algorithm, required claims, clock, revocation."""

from __future__ import annotations

import base64
import json

import jwt
import peewee
import pytest

from bitnet_sdk.auth import InvalidToken, TokenExpired, TokenRevoked, create_user
from bitnet_sdk.auth.access import (
    LEEWAY_S,
    claims_scopes,
    issue_access_token,
    prune_revoked,
    revoke_jti,
    verify_access_token,
)
from bitnet_sdk.config import Settings
from bitnet_sdk.store import RevokedToken, User

from .conftest import T0


@pytest.fixture
def user(db: peewee.Database) -> User:
    return create_user("tok@example.com", None, tier="team")


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_issue_and_verify(user: User, settings: Settings) -> None:
    token, expires_in = issue_access_token(
        user, ["models:read", "inference"], settings, session_id="fam_x", now=T0
    )
    assert expires_in == settings.access_token_ttl_s
    claims = verify_access_token(token, settings, now=T0 + 1)
    assert claims["sub"] == user.id
    assert claims["tier"] == "team"
    assert claims["scope"] == "models:read inference"
    assert claims_scopes(claims) == ["models:read", "inference"]
    assert claims["iss"] == settings.jwt_issuer and claims["aud"] == settings.jwt_audience
    assert claims["iat"] == claims["nbf"] == int(T0)
    assert claims["exp"] == int(T0) + settings.access_token_ttl_s
    assert claims["sid"] == "fam_x"
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "at+jwt"}


def test_each_token_has_its_own_jti(user: User, settings: Settings) -> None:
    a, _ = issue_access_token(user, [], settings, now=T0)
    b, _ = issue_access_token(user, [], settings, now=T0)
    assert _claims(a)["jti"] != _claims(b)["jti"]
    assert "sid" not in _claims(a)


def test_expiry_with_leeway(user: User, settings: Settings) -> None:
    token, ttl = issue_access_token(user, [], settings, now=T0)
    verify_access_token(token, settings, now=T0 + ttl + LEEWAY_S - 1)
    with pytest.raises(TokenExpired):
        verify_access_token(token, settings, now=T0 + ttl + LEEWAY_S)


def test_not_yet_valid(user: User, settings: Settings) -> None:
    token, _ = issue_access_token(user, [], settings, now=T0 + 3600)
    verify_access_token(token, settings, now=T0 + 3600 - LEEWAY_S)
    with pytest.raises(InvalidToken, match="not valid yet"):
        verify_access_token(token, settings, now=T0)


def test_wrong_secret_issuer_audience(user: User, settings: Settings) -> None:
    token, _ = issue_access_token(user, [], settings, now=T0)
    for other in (
        settings.with_(jwt_secret="another-secret-" + "x" * 40),
        settings.with_(jwt_issuer="someone-else"),
        settings.with_(jwt_audience="another-api"),
    ):
        with pytest.raises(InvalidToken):
            verify_access_token(token, other, now=T0)


def test_alg_none_refused(user: User, settings: Settings) -> None:
    token, _ = issue_access_token(user, ["admin"], settings, now=T0)
    forged = ".".join([_b64({"alg": "none", "typ": "at+jwt"}), token.split(".")[1], ""])
    with pytest.raises(InvalidToken):
        verify_access_token(forged, settings, now=T0)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_algorithms_refused_even_with_right_key(user: User, settings: Settings, alg: str) -> None:
    claims = _claims(issue_access_token(user, [], settings, now=T0)[0])
    token = jwt.encode(claims, settings.secret(), algorithm=alg, headers={"typ": "at+jwt"})
    with pytest.raises(InvalidToken):
        verify_access_token(token, settings, now=T0)


def test_other_token_types_refused(user: User, settings: Settings) -> None:
    claims = _claims(issue_access_token(user, [], settings, now=T0)[0])
    token = jwt.encode(claims, settings.secret(), algorithm="HS256")  # typ JWT, e.g. another use
    with pytest.raises(InvalidToken, match="type"):
        verify_access_token(token, settings, now=T0)


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "jti", "sub", "scope", "nbf"])
def test_required_claims(user: User, settings: Settings, missing: str) -> None:
    claims = _claims(issue_access_token(user, [], settings, now=T0)[0])
    del claims[missing]
    token = jwt.encode(claims, settings.secret(), algorithm="HS256", headers={"typ": "at+jwt"})
    with pytest.raises(InvalidToken):
        verify_access_token(token, settings, now=T0)


def test_tampered_payload_refused(user: User, settings: Settings) -> None:
    token, _ = issue_access_token(user, ["inference"], settings, now=T0)
    header, _payload, sig = token.split(".")
    claims = _claims(token)
    claims["scope"] = "inference admin"
    with pytest.raises(InvalidToken):
        verify_access_token(".".join([header, _b64(claims), sig]), settings, now=T0)


def test_revoked_jti_and_session(user: User, settings: Settings) -> None:
    token, ttl = issue_access_token(user, [], settings, session_id="fam_a", now=T0)
    other, _ = issue_access_token(user, [], settings, session_id="fam_b", now=T0)
    revoke_jti(_claims(token)["jti"], T0 + ttl)
    with pytest.raises(TokenRevoked):
        verify_access_token(token, settings, now=T0 + 1)
    verify_access_token(other, settings, now=T0 + 1)
    revoke_jti("fam_b", T0 + ttl)
    with pytest.raises(TokenRevoked):
        verify_access_token(other, settings, now=T0 + 1)
    # The revocation check can be skipped (e.g. for a purely offline check).
    verify_access_token(other, settings, now=T0 + 1, check_revoked=False)


def test_revoke_is_idempotent_and_extends(user: User, settings: Settings) -> None:
    revoke_jti("j1", T0 + 10)
    revoke_jti("j1", T0 + 5)
    revoke_jti("j1", T0 + 20)
    row = RevokedToken.get_by_id("j1")
    assert row.expires_at.timestamp() == T0 + 20 + LEEWAY_S


def test_prune_revoked(user: User, settings: Settings) -> None:
    revoke_jti("old", T0)
    revoke_jti("new", T0 + 1000)
    assert prune_revoked(now=T0 + 500) == 1
    assert [r.jti for r in RevokedToken.select()] == ["new"]
