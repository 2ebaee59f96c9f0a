"""Login sessions: an access token plus a rotating, opaque refresh token.

Refresh tokens are opaque (``bnr_<jti>.<secret>``), not JWTs: they are only
ever checked by this server, against the database, so a signature adds
nothing and opaque tokens cannot be inspected or forged offline. The
database keeps the ``jti`` and a peppered hash of the secret.

A login starts a *family* (the session, ``sid`` claim of its access tokens).
Using a refresh token marks it used and issues a new pair in the same family
(rotation). Presenting a refresh token that was already used means it leaked
(or a client raced itself): the whole family is revoked, including its
access tokens still in flight, and :class:`RefreshTokenReused` is raised.
Logout revokes the family and the presented access token.

Scopes (RFC 6749 §6): the scopes granted at login are stored with the family
(on each of its refresh tokens). A refresh issues them again, intersected with
what the user still holds; a refresh may ask for fewer (for that access token
only, the session keeps its grant), never for more (``ValueError``, answered
``400 invalid_scope``). A token without a recorded grant (issued before the
grant was stored) cannot be refreshed: :class:`InvalidToken`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bitnet_sdk.auth.access import issue_access_token, revoke_jti
from bitnet_sdk.auth.crypto import hash_secret, secrets_equal, server_pepper
from bitnet_sdk.auth.errors import (
    AccountDisabled,
    InvalidToken,
    RefreshTokenReused,
    TokenExpired,
    TokenRevoked,
)
from bitnet_sdk.auth.scopes import format_scope, validate_scopes
from bitnet_sdk.config import Settings
from bitnet_sdk.store.db import write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.ids import new_id, random_token
from bitnet_sdk.store.models import RefreshToken, User

__all__ = [
    "REFRESH_PREFIX",
    "TokenPair",
    "logout",
    "narrow_scopes",
    "refresh_session",
    "revoke_family",
    "revoke_user_sessions",
    "start_session",
]

REFRESH_PREFIX = "bnr_"


@dataclass(frozen=True)
class TokenPair:
    """What a login or refresh answers (OAuth 2 token response fields)."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    scope: str
    session_id: str
    token_type: str = "Bearer"


def _new_refresh(user: User, family_id: str, granted: list[str], settings: Settings,
                 now: float | None) -> tuple[str, str]:
    """Insert a refresh token row of a session granted ``granted``; return ``(token, jti)``."""
    jti, secret = random_token(), secrets.token_urlsafe(32)
    issued = utcnow(now)
    RefreshToken.create(
        jti=jti,
        family_id=family_id,
        user=user.id,
        token_hash=hash_secret(secret, server_pepper(settings)),
        issued_at=issued,
        expires_at=issued + timedelta(seconds=settings.refresh_token_ttl_s),
        scopes=list(granted),
    )
    return f"{REFRESH_PREFIX}{jti}.{secret}", jti


def narrow_scopes(user: User, requested: Iterable[str] | None) -> list[str]:
    """The scopes a token asking for ``requested`` gets: the user's when ``None``.

    ``ValueError`` when a requested scope is unknown or not held by the user
    (OAuth 2 ``invalid_scope``): a token never carries more than its user holds.
    """
    if requested is None:
        return list(user.scopes)
    wanted = validate_scopes(requested)
    missing = sorted(set(wanted) - set(user.scopes))
    if missing:
        raise ValueError(f"user does not hold scopes: {', '.join(missing)}")
    if not wanted:
        raise ValueError("ask for at least one scope")
    return wanted


def _pair(
    user: User,
    refresh: str,
    family_id: str,
    settings: Settings,
    now: float | None,
    scopes: Iterable[str] | None = None,
) -> TokenPair:
    scopes = narrow_scopes(user, scopes)
    access, expires_in = issue_access_token(user, scopes, settings, session_id=family_id, now=now)
    return TokenPair(
        access_token=access,
        expires_in=expires_in,
        refresh_token=refresh,
        refresh_expires_in=int(settings.refresh_token_ttl_s),
        scope=format_scope(scopes),
        session_id=family_id,
    )


def start_session(
    user: User,
    settings: Settings,
    *,
    scopes: Iterable[str] | None = None,
    now: float | None = None,
) -> TokenPair:
    """A new session (family) for an authenticated, enabled ``user``.

    ``scopes`` narrows the session (default: all the user's scopes): its
    refreshes never issue more. ``ValueError`` (before anything is stored)
    when it asks for more than the user holds.
    """
    if user.disabled:
        raise AccountDisabled("account is disabled")
    granted = narrow_scopes(user, scopes)
    family_id = new_id("fam")
    with write_transaction():
        refresh, _ = _new_refresh(user, family_id, granted, settings, now)
    return _pair(user, refresh, family_id, settings, now, granted)


def _parse(token: str) -> tuple[str, str]:
    if not token.startswith(REFRESH_PREFIX):
        raise InvalidToken("not a refresh token")
    jti, sep, secret = token[len(REFRESH_PREFIX) :].partition(".")
    if not sep or not jti or not secret or len(jti) > 64:
        raise InvalidToken("malformed refresh token")
    return jti, secret


def _find(token: str, settings: Settings) -> RefreshToken:
    jti, secret = _parse(token)
    row = RefreshToken.get_or_none(RefreshToken.jti == jti)
    expected = hash_secret(secret, server_pepper(settings))
    if row is None or not secrets_equal(row.token_hash, expected):
        raise InvalidToken("unknown refresh token")
    return row


def revoke_family(family_id: str, settings: Settings, *, now: float | None = None) -> None:
    """End a session: its refresh tokens and the access tokens issued in it."""
    at = utcnow(now)
    RefreshToken.update(revoked_at=at).where(
        RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_null()
    ).execute()
    revoke_jti(family_id, at.timestamp() + settings.access_token_ttl_s)


def refresh_session(
    token: str,
    settings: Settings,
    *,
    scopes: Iterable[str] | None = None,
    now: float | None = None,
) -> TokenPair:
    """Rotate: consume ``token`` and return a new pair in the same session.

    The new access token carries the session's granted scopes that the user
    still holds; ``scopes`` narrows it further (this token only). A request
    for a scope outside that raises ``ValueError`` after the token was checked
    but before it is consumed (module docstring).

    Raises :class:`InvalidToken` (unknown/malformed), :class:`TokenExpired`,
    :class:`TokenRevoked`, :class:`RefreshTokenReused` (after revoking the
    family) or :class:`AccountDisabled`.
    """
    current = utcnow(now)
    failure: InvalidToken | AccountDisabled | None = None
    with write_transaction():
        row = _find(token, settings)
        user = User.get_by_id(row.user_id)
        if row.revoked_at is not None:
            failure = TokenRevoked("session has ended")
        elif row.used_at is not None:
            revoke_family(row.family_id, settings, now=now)
            failure = RefreshTokenReused("refresh token reused: session revoked")
        elif row.expires_at <= current:
            failure = TokenExpired("refresh token expired")
        elif user.disabled:
            revoke_family(row.family_id, settings, now=now)
            failure = AccountDisabled("account is disabled")
        elif row.scopes is None:
            failure = InvalidToken("session has no recorded scopes: log in again")
        else:
            issued = _session_scopes(user, row.scopes, scopes)
            refresh, new_jti = _new_refresh(user, row.family_id, row.scopes, settings, now)
            # Conditional update: if a concurrent rotation won, this one is a reuse.
            claimed = (
                RefreshToken.update(used_at=current, replaced_by=new_jti)
                .where(
                    RefreshToken.jti == row.jti,
                    RefreshToken.used_at.is_null(),
                    RefreshToken.revoked_at.is_null(),
                )
                .execute()
            )
            if claimed != 1:
                RefreshToken.delete().where(RefreshToken.jti == new_jti).execute()
                revoke_family(row.family_id, settings, now=now)
                failure = RefreshTokenReused("refresh token reused: session revoked")
    if failure is not None:
        raise failure
    return _pair(user, refresh, row.family_id, settings, now, issued)


def _session_scopes(user: User, granted: list[str], requested: Iterable[str] | None) -> list[str]:
    """What a refresh issues: ``requested`` (default: all) within the session's grant and
    the user's current scopes. ``ValueError`` for a scope outside the grant."""
    allowed = [scope for scope in granted if scope in set(user.scopes)]
    if requested is None:
        if not allowed:
            raise ValueError("the session's scopes are no longer held by the user")
        return allowed
    wanted = validate_scopes(requested)
    outside = sorted(set(wanted) - set(granted))
    if outside:
        raise ValueError(f"scopes not granted to this session: {', '.join(outside)}")
    return narrow_scopes(user, wanted)


def revoke_user_sessions(user_id: str, settings: Settings, *, now: float | None = None) -> int:
    """End every open session of a user ("log out everywhere"); returns how many."""
    with write_transaction():
        families = [
            row.family_id
            for row in RefreshToken.select(RefreshToken.family_id)
            .where(RefreshToken.user == user_id, RefreshToken.revoked_at.is_null())
            .distinct()
        ]
        for family_id in families:
            revoke_family(family_id, settings, now=now)
    return len(families)


def logout(
    settings: Settings,
    *,
    access_claims: dict[str, Any] | None = None,
    refresh_token: str | None = None,
    now: float | None = None,
) -> None:
    """End the session named by verified ``access_claims`` and/or ``refresh_token``.

    The access token itself is revoked until it would have expired. An unknown
    refresh token raises :class:`InvalidToken`.
    """
    with write_transaction():
        if access_claims is not None:
            revoke_jti(str(access_claims["jti"]), float(access_claims["exp"]))
            if access_claims.get("sid"):
                revoke_family(str(access_claims["sid"]), settings, now=now)
        if refresh_token is not None:
            revoke_family(_find(refresh_token, settings).family_id, settings, now=now)
