"""Administrator operations: accounts (tier, enabled or disabled) and tier upgrade requests.

Thin handlers over :mod:`bitnet_sdk.auth`; the ``admin`` scope is checked before they run
(``x-scopes`` in the spec). Unknown ids are ``404``, a tier the server does not offer
``422``, deciding a request twice or disabling one's own account ``409``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bitnet_sdk import auth
from bitnet_sdk.api._http import json_response
from bitnet_sdk.api.account import account_json, upgrade_json
from bitnet_sdk.server.context import current
from bitnet_sdk.service.errors import bad_request, conflict, not_found, unprocessable
from bitnet_sdk.service.pagination import InvalidCursor, Page, paginate
from bitnet_sdk.store.models import UpgradeRequest, User

__all__ = [
    "approve_upgrade_request",
    "list_upgrade_requests",
    "list_users",
    "reject_upgrade_request",
    "update_user",
]


def _page(query: Any, model: Any, cursor: str | None, limit: int) -> Page[Any]:
    try:
        return paginate(query, model, cursor=cursor, limit=limit)
    except InvalidCursor as exc:
        raise bad_request(str(exc)) from None


def _pending_by_user(user_ids: list[str]) -> dict[str, UpgradeRequest]:
    query = UpgradeRequest.select().where(
        UpgradeRequest.user.in_(user_ids), UpgradeRequest.status == "pending")
    return {r.user_id: r for r in query}


def _users_blocking(cursor: str | None, limit: int, filters: dict[str, Any]) -> dict[str, Any]:
    page = _page(auth.user_query(**filters), User, cursor, limit)
    pending = _pending_by_user([u.id for u in page.items]) if page.items else {}
    return {"data": [account_json(u, pending.get(u.id)) for u in page.items],
            "next_cursor": page.next_cursor}


async def list_users(
    limit: int = 20,
    cursor: str | None = None,
    email_contains: str | None = None,
    tier: str | None = None,
    status: str | None = None,
) -> Any:
    """Every account, newest first, filtered by email substring, tier and status."""
    disabled = None if status is None else status == "disabled"
    filters = {"email_contains": email_contains, "tier": tier, "disabled": disabled}
    return json_response(await asyncio.to_thread(_users_blocking, cursor, limit, filters))


def _update_blocking(caller_id: str, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
    user = auth.get_user(user_id)
    if user is None:
        raise not_found("User", user_id)
    status = body.get("status")
    if status == "disabled" and user.id == caller_id:
        raise conflict("You cannot disable your own account.")
    if "tier" in body:
        try:
            auth.set_tier(user, body["tier"], settings=current().settings)
        except ValueError as exc:  # a tier this server does not offer
            raise unprocessable(str(exc)) from None
    if status is not None and (status == "disabled") != bool(user.disabled):
        auth.set_disabled(user, status == "disabled")
        if user.disabled:
            auth.revoke_user_sessions(user.id, current().settings)
    pending = auth.list_upgrade_requests(status="pending", user=user, limit=1)
    return account_json(user, pending[0] if pending else None)


async def update_user(user: str, user_id: str, body: dict[str, Any]) -> Any:
    """Change another account's tier or status (``user`` is the administrator)."""
    return json_response(await asyncio.to_thread(_update_blocking, user, user_id, body))


def _upgrades_blocking(cursor: str | None, limit: int, status: str | None) -> dict[str, Any]:
    page = _page(auth.upgrade_request_query(status=status), UpgradeRequest, cursor, limit)
    return {"data": [upgrade_json(r, r.user.email) for r in page.items],
            "next_cursor": page.next_cursor}


async def list_upgrade_requests(
    limit: int = 20, cursor: str | None = None, status: str | None = None
) -> Any:
    """Upgrade requests of every account, newest first."""
    return json_response(await asyncio.to_thread(_upgrades_blocking, cursor, limit, status))


def _decide_blocking(caller_id: str, request_id: str, approve: bool) -> dict[str, Any]:
    decider = auth.get_user(caller_id)
    try:
        if approve:
            request = auth.approve_upgrade(request_id, decided_by=decider,
                                           settings=current().settings)
        else:
            request = auth.reject_upgrade(request_id, decided_by=decider)
    except auth.NotFound:
        raise not_found("Upgrade request", request_id) from None
    except auth.UpgradeConflict as exc:
        raise conflict(str(exc)) from None
    except ValueError as exc:  # the requested tier is no longer offered
        raise unprocessable(str(exc)) from None
    return upgrade_json(request, User.get_by_id(request.user_id).email)


async def approve_upgrade_request(user: str, request_id: str) -> Any:
    """Approve: the account moves to the requested tier."""
    return json_response(await asyncio.to_thread(_decide_blocking, user, request_id, True))


async def reject_upgrade_request(user: str, request_id: str) -> Any:
    """Reject: the account keeps its tier."""
    return json_response(await asyncio.to_thread(_decide_blocking, user, request_id, False))
