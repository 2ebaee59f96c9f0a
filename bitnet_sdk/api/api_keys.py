"""API key operations: create (the full key shown once), list by prefix, revoke.

Everything is scoped to the caller: another user's key is ``404``, exactly
like a key that does not exist, so key ids do not leak. A new key's scopes
are a subset of the *credential's* scopes (a key holding only ``account``
cannot mint a key holding ``inference``), which are themselves a subset of
the user's. A user may hold at most :data:`MAX_ACTIVE_KEYS` active keys.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from bitnet_sdk import auth
from bitnet_sdk.api._http import json_response, no_content
from bitnet_sdk.api._times import client_time
from bitnet_sdk.auth.scopes import parse_scope
from bitnet_sdk.server.context import current
from bitnet_sdk.service.errors import ApiError, bad_request, forbidden, not_found, unprocessable
from bitnet_sdk.service.pagination import InvalidCursor, paginate
from bitnet_sdk.store.models import ApiKey, User

__all__ = ["MAX_ACTIVE_KEYS", "create_api_key", "list_api_keys", "revoke_api_key"]

#: Active keys per user; bounds what one account can make the server store and check.
MAX_ACTIVE_KEYS = 100


def _key_json(record: ApiKey) -> dict[str, Any]:
    info = auth.api_key_info(record)
    info.pop("revoked_at")
    return info


def _list_blocking(user_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
    try:
        page = paginate(auth.api_key_query(user_id), ApiKey, cursor=cursor, limit=limit)
    except InvalidCursor as exc:
        raise bad_request(str(exc)) from None
    return {"data": [_key_json(k) for k in page.items], "next_cursor": page.next_cursor}


async def list_api_keys(user: str, limit: int = 20, cursor: str | None = None) -> Any:
    """The caller's active keys, newest first (prefix only, never the secret)."""
    return json_response(await asyncio.to_thread(_list_blocking, user, cursor, limit))


def _parse_expiry(value: str | None) -> datetime | None:
    if value is None:
        return None
    when = client_time("expires_at", value)
    if when <= datetime.now(timezone.utc):
        raise unprocessable("expires_at must be in the future.")
    return when


def _create_blocking(
    user_id: str, credential_scopes: list[str], body: dict[str, Any]
) -> tuple[ApiKey, str]:
    user = auth.get_user(user_id)
    if user is None or user.disabled:
        raise ApiError(401, "Unauthorized", "The account behind this credential is gone.",
                       slug="unauthorized")
    requested = body.get("scopes")
    allowed = [s for s in credential_scopes if s in set(user.scopes)]
    scopes = allowed if requested is None else list(requested)
    lacking = sorted(set(scopes) - set(allowed))
    if lacking:
        raise forbidden(f"A key cannot hold scopes your credential lacks: {', '.join(lacking)}.")
    if not scopes:
        raise unprocessable("Your credential holds no scope a key could carry.")
    expires_at = _parse_expiry(body.get("expires_at"))
    if auth.api_key_query(user_id).count() >= MAX_ACTIVE_KEYS:
        raise unprocessable(f"At most {MAX_ACTIVE_KEYS} active keys per account; revoke one first.")
    try:
        return auth.create_api_key(user, body["name"], scopes, current().settings,
                                   expires_at=expires_at)
    except ValueError as exc:  # blank name
        raise unprocessable(str(exc)) from None


async def create_api_key(user: str, token_info: dict[str, Any], body: dict[str, Any]) -> Any:
    """Create a key; the answer holds the full key, which is never shown again."""
    credential_scopes = parse_scope(token_info.get("scope"))
    record, key = await asyncio.to_thread(_create_blocking, user, credential_scopes, body)
    headers = {"Location": f"/v1/api-keys/{record.id}", "Cache-Control": "no-store"}
    return json_response({**_key_json(record), "key": key}, 201, headers)


def _revoke_blocking(user_id: str, key_id: str) -> None:
    record = auth.get_api_key(key_id, user=user_id)
    if record is None or record.revoked_at is not None:
        raise not_found("API key", key_id)
    auth.revoke_api_key(key_id, user=User(id=user_id))


async def revoke_api_key(user: str, key_id: str) -> Any:
    """Revoke one of the caller's keys; it stops working at once."""
    await asyncio.to_thread(_revoke_blocking, user, key_id)
    return no_content()
