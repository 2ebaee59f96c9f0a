"""Auth operations: log in, refresh, log out, who am I, and open sign-up.

Thin over :mod:`bitnet_sdk.auth`. Password hashing and every database call run
in worker threads (``asyncio.to_thread``), never on the event loop. Failed
logins are throttled (:class:`~bitnet_sdk.service.accounting.login_throttle.LoginThrottle`:
back-off per account and address, larger budgets per address and per account
that spare addresses the account logged in from; ``429`` with ``Retry-After``);
sign-up attempts are limited per client address (:data:`SIGNUP_PER_HOUR`). The
client address is the TCP peer, or what the operator's trusted proxies say in
``X-Forwarded-For`` (:mod:`bitnet_sdk.server.client_address`), so a client
cannot choose it.

Error answers never tell an unknown email from a wrong password, nor an
unknown refresh token from a spent one (all ``401``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from connexion import context as connexion_context

from bitnet_sdk import auth
from bitnet_sdk.api._http import json_response, no_content
from bitnet_sdk.auth.scopes import parse_scope
from bitnet_sdk.config import Settings
from bitnet_sdk.server.client_address import client_address
from bitnet_sdk.server.context import current
from bitnet_sdk.service.accounting.login_throttle import LoginDecision, LoginThrottle
from bitnet_sdk.service.accounting.ratelimit import HOUR, check_and_consume
from bitnet_sdk.service.errors import ApiError, bad_request, conflict, too_many_requests
from bitnet_sdk.store.models import User

__all__ = [
    "SIGNUP_PER_HOUR",
    "get_current_user",
    "login",
    "logout",
    "refresh_token",
    "sign_up",
    "user_json",
]

#: Sign-up attempts per client address per hour (each costs a password hash).
SIGNUP_PER_HOUR = 10
_THROTTLE = LoginThrottle()
_NO_STORE = {"Cache-Control": "no-store"}


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def user_json(user: User) -> dict[str, Any]:
    """The spec's ``User``."""
    return {
        "id": user.id,
        "email": user.email,
        "tier": user.tier,
        "is_admin": bool(user.is_admin),
        "created_at": iso(user.created_at),
    }


def _client_address() -> str | None:
    return client_address(connexion_context.scope, current().settings.trusted_proxies)


def _unauthorized(detail: str, slug: str = "unauthorized") -> ApiError:
    return ApiError(401, "Unauthorized", detail, slug=slug, headers={"WWW-Authenticate": "Bearer"})


def _throttled(decision: LoginDecision) -> ApiError:
    return too_many_requests(
        f"{decision.reason.capitalize()}; retry in {decision.retry_after_s} seconds.",
        decision.retry_after_s,
        {},
    )


def _token_json(pair: auth.TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
        "refresh_expires_in": pair.refresh_expires_in,
        "scope": pair.scope,
    }


def _login_blocking(
    email: str, password: str, scopes: Iterable[str] | None, address: str | None,
    settings: Settings,
) -> auth.TokenPair:
    decision = _THROTTLE.check(email, address)
    if not decision.allowed:
        raise _throttled(decision)
    try:
        user = auth.authenticate(email, password)
    except auth.InvalidCredentials:
        _THROTTLE.record_failure(email, address)
        raise _unauthorized("Invalid email or password.", "invalid-credentials") from None
    except auth.AccountDisabled:
        raise _unauthorized("This account is disabled.", "account-disabled") from None
    _THROTTLE.succeeded(email, address)
    try:
        return auth.start_session(user, settings, scopes=scopes)
    except ValueError as exc:
        raise bad_request(str(exc), error="invalid_scope") from None


async def login(body: dict[str, Any]) -> Any:
    """JSON ``{email, password, scopes?}`` (the only body type: client generators handle one best)."""
    pair = await asyncio.to_thread(
        _login_blocking, body["email"], body["password"], body.get("scopes"), _client_address(),
        current().settings,
    )
    return json_response(_token_json(pair), 200, _NO_STORE)


def _refresh_blocking(token: str, scopes: list[str] | None, settings: Settings) -> auth.TokenPair:
    try:
        return auth.refresh_session(token, settings, scopes=scopes)
    except auth.RefreshTokenReused:
        raise _unauthorized(
            "Refresh token already used: the session has been ended.", "refresh-token-reused"
        ) from None
    except (auth.InvalidToken, auth.AccountDisabled):
        raise _unauthorized("Invalid or expired refresh token.", "invalid-token") from None
    except ValueError as exc:
        raise bad_request(str(exc), error="invalid_scope") from None


async def refresh_token(body: dict[str, Any]) -> Any:
    """Rotate a refresh token (JSON ``{refresh_token}``)."""
    pair = await asyncio.to_thread(
        _refresh_blocking, body["refresh_token"], body.get("scopes"), current().settings
    )
    return json_response(_token_json(pair), 200, _NO_STORE)


def _logout_blocking(token_info: dict[str, Any], all_sessions: bool, settings: Settings) -> None:
    if token_info.get("auth") != "jwt":
        return  # API keys have no session; they are revoked with DELETE /api-keys/{key_id}
    auth.logout(settings, access_claims=token_info)
    if all_sessions:
        auth.revoke_user_sessions(str(token_info["sub"]), settings)


async def logout(token_info: dict[str, Any], body: Any = None) -> Any:
    """End the presented token's session (or all of the user's); idempotent."""
    # Without a Content-Type (the body is optional) Connexion hands over raw bytes.
    all_sessions = isinstance(body, dict) and bool(body.get("all_sessions", False))
    await asyncio.to_thread(_logout_blocking, token_info, all_sessions, current().settings)
    return no_content()


def _me_blocking(user_id: str, token_info: dict[str, Any]) -> dict[str, Any]:
    record = auth.get_user(user_id)
    if record is None or record.disabled:
        raise _unauthorized("The account behind this credential no longer exists or is disabled.")
    body = {**user_json(record), "scopes": parse_scope(token_info.get("scope"))}
    if token_info.get("auth") == "api_key":
        key = auth.get_api_key(str(token_info.get("key_id")), user=user_id)
        body.update(credential_type="api_key", api_key_id=token_info.get("key_id"),
                    expires_at=iso(key.expires_at) if key else None)
    else:
        exp = token_info.get("exp")
        body.update(credential_type="access_token", api_key_id=None,
                    expires_at=iso(datetime.fromtimestamp(float(exp), timezone.utc)) if exp else None)
    return body


async def get_current_user(user: str, token_info: dict[str, Any]) -> Any:
    """The user behind the credential, and the credential's kind, scopes and expiry."""
    return json_response(await asyncio.to_thread(_me_blocking, user, token_info))


def _entry_tier(settings: Settings) -> str:
    return "developer" if "developer" in settings.tiers else next(iter(settings.tiers))


def _sign_up_blocking(email: str, password: str, address: str | None, settings: Settings) -> User:
    decision = check_and_consume(f"signup-address:{address or 'unknown'}", SIGNUP_PER_HOUR, HOUR)
    if not decision.allowed:
        raise too_many_requests(
            f"Too many sign-ups from this address; retry in {decision.retry_after_s} seconds.",
            decision.retry_after_s,
            {},
        )
    try:
        return auth.create_user(email, password, tier=_entry_tier(settings), settings=settings)
    except auth.EmailTaken:
        raise conflict("An account with this email already exists.") from None
    except ValueError as exc:  # WeakPassword is a ValueError too
        raise bad_request(str(exc)) from None


async def sign_up(body: dict[str, Any]) -> Any:
    """Create an account when the operator opened sign-up (``Settings.open_signup``)."""
    settings = current().settings
    if not settings.open_signup:
        raise ApiError(403, "Forbidden", "Sign-up is closed on this server; ask an operator "
                       "for an account.", slug="signup-closed")
    user = await asyncio.to_thread(
        _sign_up_blocking, body["email"], body["password"], _client_address(), settings
    )
    return json_response(user_json(user), 201, {"Location": "/v1/account"})
