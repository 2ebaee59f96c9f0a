"""Connexion security functions for the spec's two schemes.

``bearer`` (HTTP bearer) carries a JWT access token or an API key; ``apiKey``
carries an API key in ``X-API-Key``. Neither scheme type can list scopes in
OpenAPI 3.0, so each operation names the scopes it needs in ``x-scopes`` and both
functions enforce them here (403 when one is missing; an operation that cannot
be placed needs ``admin``: deny by default). Both return Connexion ``token_info``: a dict with ``sub`` (the
user id) and ``scope`` (space-separated), which handlers receive as
``token_info``/``user``. Returning None makes Connexion answer 401.

``token_info`` also carries ``tier`` and ``auth`` (``"jwt"`` or ``"api_key"``);
for a JWT all its claims (``jti``, ``exp``, ``sid`` …), for an API key its
record id as ``key_id``. The rate-limit middleware reads ``sub`` and ``tier``.
Both kinds are checked against the account as it is now (one primary-key
read): disabled accounts are refused, ``tier`` is current, and ``scope`` never
holds a scope the account has lost since the token was issued.

The checks read the database, so they run in a worker thread, never on the
event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from connexion.exceptions import OAuthScopeProblem

from bitnet_sdk import auth
from bitnet_sdk.auth import credentials
from bitnet_sdk.auth.principal import token_scopes
from bitnet_sdk.server.context import current

__all__ = ["apikey_info", "bearer_info", "resolve_credentials"]


def resolve_credentials(token: str) -> dict[str, Any] | None:
    """token_info for a bearer token or API key under this server's settings, or None.

    Blocking (database); see :func:`bitnet_sdk.auth.credentials.resolve_credentials`.
    """
    return credentials.resolve_credentials(token, current().settings)


async def bearer_info(token: str, request: Any = None) -> dict[str, Any] | None:
    """token_info for ``Authorization: Bearer``, with the operation's ``x-scopes`` enforced."""
    info = await asyncio.to_thread(resolve_credentials, token)
    return _with_scopes(info, request)


async def apikey_info(apikey: str, request: Any = None) -> dict[str, Any] | None:
    """token_info for ``X-API-Key``, with the operation's ``x-scopes`` enforced."""
    if not auth.looks_like_api_key(apikey):
        return None
    info = await asyncio.to_thread(resolve_credentials, apikey)
    return _with_scopes(info, request)


def _with_scopes(info: dict[str, Any] | None, request: Any) -> dict[str, Any] | None:
    """``info`` when it holds every scope the operation needs; 403 problem otherwise."""
    if info is None:
        return None
    required = _operation_scopes(request)
    held = set(token_scopes(info))
    if not set(required) <= held:
        raise OAuthScopeProblem(required_scopes=required, token_scopes=sorted(held))
    return info


def _operation_scopes(request: Any) -> list[str]:
    routing = (request.scope.get("extensions") or {}).get("connexion_routing") or {}
    operation_id = routing.get("operation_id")
    scopes = current().operation_scopes.get(operation_id) if operation_id else None
    if scopes is None:  # fail closed: an operation we cannot place needs admin
        return ["admin"]
    return scopes
