"""Who a credential speaks for: a bearer token or API key checked against the account now.

One function for every transport (Connexion's security functions, the WebSocket handshake).
The result is the dict Connexion calls ``token_info``: ``sub`` (the user id), ``scope``
(space-separated), ``tier``, ``auth`` (``"jwt"`` or ``"api_key"``), and for a JWT all its
claims (``jti``, ``exp``, ``sid`` …), for an API key its record id as ``key_id``. Both kinds
are checked against the account as it is now (one primary-key read): disabled accounts are
refused, ``tier`` is current, and ``scope`` never holds a scope the account has lost since
the token was issued. Blocking (database).
"""

from __future__ import annotations

from typing import Any

from bitnet_sdk.auth.access import claims_scopes, verify_access_token
from bitnet_sdk.auth.api_keys import key_id_of, looks_like_api_key, verify_api_key
from bitnet_sdk.auth.errors import AuthError
from bitnet_sdk.auth.users import get_user
from bitnet_sdk.config import Settings

__all__ = ["resolve_credentials"]


def resolve_credentials(token: str, settings: Settings) -> dict[str, Any] | None:
    """token_info for a bearer token or API key, or None when it is not valid."""
    try:
        if looks_like_api_key(token):
            user, scopes = verify_api_key(token, settings)
            return {"sub": user.id, "scope": " ".join(scopes), "tier": user.tier,
                    "auth": "api_key", "key_id": key_id_of(token)}
        claims = verify_access_token(token, settings)
    except AuthError:
        return None
    # The account as it is now: a disabled account's tokens stop at once, and a
    # tier change or a withdrawn scope applies without waiting for a refresh.
    account = get_user(claims["sub"])
    if account is None or account.disabled:
        return None
    held = set(account.scopes)
    scope = " ".join(s for s in claims_scopes(claims) if s in held)
    return {**claims, "scope": scope, "tier": account.tier, "auth": "jwt"}
