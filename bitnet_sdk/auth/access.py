"""Short-lived access tokens: HS256 JWTs (PyJWT) and their revocation list.

Claims: ``sub`` (user id), ``tier``, ``scope`` (space-separated), ``sid``
(session = refresh-token family, when issued by a login), ``iss``, ``aud``,
``iat``, ``nbf``, ``exp``, ``jti``; header ``typ: at+jwt`` (RFC 9068) so no
other JWT signed with the same secret is accepted as an access token.

Verification pins the algorithm to HS256 (``none``, RS/ES and every other
``alg`` are refused), requires every registered claim, checks issuer and
audience, and checks times against an injectable ``now`` with a small
leeway. It then consults :class:`~bitnet_sdk.store.models.RevokedToken` for
the token's ``jti`` and its session ``sid`` (logout and refresh-token reuse
put them there), one indexed query per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jwt

from bitnet_sdk.auth.errors import InvalidToken, TokenExpired, TokenRevoked
from bitnet_sdk.auth.scopes import format_scope, parse_scope
from bitnet_sdk.config import Settings
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.ids import random_token
from bitnet_sdk.store.models import RevokedToken, User

__all__ = [
    "ALGORITHM",
    "LEEWAY_S",
    "TOKEN_TYPE",
    "claims_scopes",
    "issue_access_token",
    "prune_revoked",
    "revoke_jti",
    "verify_access_token",
]

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"
#: Clock skew tolerated between the issuing and the verifying process.
LEEWAY_S = 30
_REQUIRED = ("sub", "scope", "iss", "aud", "iat", "nbf", "exp", "jti")


def _now_s(now: float | None) -> int:
    return int(utcnow(now).timestamp())


def issue_access_token(
    user: User,
    scopes: Iterable[str],
    settings: Settings,
    *,
    session_id: str | None = None,
    now: float | None = None,
) -> tuple[str, int]:
    """``(jwt, expires_in_seconds)`` for ``user`` carrying ``scopes``.

    The caller decides the scopes (a subset of the user's); ``session_id``
    ties the token to a refresh-token family so logging out ends it.
    """
    issued = _now_s(now)
    ttl = int(settings.access_token_ttl_s)
    claims: dict[str, Any] = {
        "sub": user.id,
        "tier": user.tier,
        "scope": format_scope(scopes),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        "jti": random_token(),
    }
    if session_id:
        claims["sid"] = session_id
    token = jwt.encode(claims, settings.secret(), algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE})
    return token, ttl


def _decode(token: str, settings: Settings) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
            raise InvalidToken("unexpected token type or algorithm")
        return jwt.decode(
            token,
            settings.secret(),
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={
                "require": list(_REQUIRED),
                # Times are checked below against the injectable clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid access token: {exc}") from exc


def _check_times(claims: dict[str, Any], now: float | None) -> None:
    current = utcnow(now).timestamp()
    try:
        exp, nbf, iat = (float(claims[k]) for k in ("exp", "nbf", "iat"))
    except (TypeError, ValueError) as exc:
        raise InvalidToken("time claims must be numbers") from exc
    if exp <= current - LEEWAY_S:
        raise TokenExpired("access token expired")
    if nbf > current + LEEWAY_S or iat > current + LEEWAY_S:
        raise InvalidToken("access token not valid yet")


def verify_access_token(
    token: str, settings: Settings, *, now: float | None = None, check_revoked: bool = True
) -> dict[str, Any]:
    """The claims of a valid, unrevoked access token; :class:`InvalidToken` (or a subclass) otherwise.

    The returned dict can serve directly as Connexion ``token_info``: it has
    ``sub`` and the space-separated ``scope``.
    """
    claims = _decode(token, settings)
    if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("scope"), str):
        raise InvalidToken("malformed subject or scope claim")
    _check_times(claims, now)
    if check_revoked:
        ids = [claims["jti"]] + ([claims["sid"]] if claims.get("sid") else [])
        revoked = RevokedToken.select().where(
            RevokedToken.jti.in_(ids), RevokedToken.expires_at > utcnow(now)
        )
        if revoked.exists():
            raise TokenRevoked("access token revoked")
    return claims


def claims_scopes(claims: dict[str, Any]) -> list[str]:
    """The scopes of verified claims, as a list."""
    return parse_scope(claims.get("scope"))


def revoke_jti(jti: str, until_epoch: float) -> None:
    """Refuse tokens whose ``jti`` or ``sid`` is ``jti`` until ``until_epoch`` (+ leeway); idempotent."""
    until = utcnow(until_epoch + LEEWAY_S)
    RevokedToken.insert(jti=jti, expires_at=until).on_conflict_ignore().execute()
    RevokedToken.update(expires_at=until).where(
        RevokedToken.jti == jti, RevokedToken.expires_at < until
    ).execute()


def prune_revoked(*, now: float | None = None) -> int:
    """Forget revocations of tokens that have expired anyway; returns rows removed."""
    return RevokedToken.delete().where(RevokedToken.expires_at < utcnow(now)).execute()
