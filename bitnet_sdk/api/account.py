"""Account operations: the account, its usage, its limits and quotas, tier change requests.

Always the caller's own account (the ``user`` Connexion hands over from the
verified credential); there is no way to name another account here. Usage
comes from the per-request records the rate-limit middleware writes
(:mod:`bitnet_sdk.server.metering`); an upgrade request waits for an operator
(``bitnet user approve-upgrade <id>`` or :mod:`bitnet_sdk.api.admin`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from bitnet_sdk import auth
from bitnet_sdk.api._http import json_response
from bitnet_sdk.api._times import client_time
from bitnet_sdk.api.auth import iso
from bitnet_sdk.server.context import current
from bitnet_sdk.service.accounting import storage_quota, usage
from bitnet_sdk.service.accounting.limiter import limiter_for
from bitnet_sdk.service.accounting.ratelimit import customer_key, tier_limit
from bitnet_sdk.service.errors import ApiError, conflict, unprocessable
from bitnet_sdk.store.models import UpgradeRequest, User

__all__ = [
    "MAX_USAGE_RANGE",
    "account_json",
    "get_account",
    "get_account_limits",
    "get_account_usage",
    "request_account_upgrade",
    "upgrade_json",
]

#: Longest range one usage report may cover.
MAX_USAGE_RANGE = timedelta(days=366)
_DEFAULT_RANGE = timedelta(days=30)


def _user(user_id: str) -> User:
    record = auth.get_user(user_id)
    if record is None:
        raise ApiError(401, "Unauthorized", "The account behind this credential no longer exists.",
                       slug="unauthorized")
    return record


def upgrade_json(request: UpgradeRequest, email: str) -> dict[str, Any]:
    """An ``UpgradeRequest`` body; ``email`` is the requesting account's."""
    return {
        "id": request.id,
        "user_id": request.user_id,
        "email": email,
        "from_tier": request.from_tier,
        "to_tier": request.to_tier,
        "status": request.status,
        "reason": request.reason,
        "created_at": iso(request.created_at),
        "decided_at": iso(request.decided_at),
    }


def account_json(user: User, pending: UpgradeRequest | None) -> dict[str, Any]:
    """An ``Account`` body (the caller's own, or any one for administrators)."""
    body = {
        "id": user.id,
        "email": user.email,
        "tier": user.tier,
        "is_admin": bool(user.is_admin),
        "status": "disabled" if user.disabled else "active",
        "scopes": list(user.scopes),
        "created_at": iso(user.created_at),
        "last_login_at": iso(user.last_login_at),
    }
    if pending is not None:
        body["pending_upgrade"] = upgrade_json(pending, user.email)
    return body


def _account_blocking(user_id: str) -> dict[str, Any]:
    user = _user(user_id)
    pending = auth.list_upgrade_requests(status="pending", user=user, limit=1)
    return account_json(user, pending[0] if pending else None)


async def get_account(user: str) -> Any:
    return json_response(await asyncio.to_thread(_account_blocking, user))


def _parse_time(name: str, value: str | None, default: datetime) -> datetime:
    return default if value is None else client_time(name, value)


def _zero() -> dict[str, Any]:
    return {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "compute_units": 0.0,
            "errors": 0}


def _usage_blocking(user_id: str, start: datetime, end: datetime, group_by: str) -> dict[str, Any]:
    buckets, totals = [], _zero()
    for key, counts in usage.usage_report(user_id, start, end, group_by):
        bucket = {
            "key": key,
            "requests": counts.requests,
            "prompt_tokens": counts.prompt_tokens,
            "completion_tokens": counts.completion_tokens,
            "compute_units": counts.compute_units,
            "errors": counts.errors,
        }
        buckets.append(bucket)
        for name in totals:
            totals[name] += bucket[name]
    return {"from": iso(start), "to": iso(end), "group_by": group_by, "buckets": buckets,
            "totals": totals}


async def get_account_usage(
    user: str, from_: str | None = None, to: str | None = None, group_by: str = "day"
) -> Any:
    """Usage in ``[from, to)`` (default the last 30 days) per UTC day or per operation."""
    end = _parse_time("to", to, datetime.now(timezone.utc))
    start = _parse_time("from", from_, end - _DEFAULT_RANGE)
    if start >= end:
        raise unprocessable("'from' must be before 'to'.")
    if end - start > MAX_USAGE_RANGE:
        raise unprocessable(f"A report covers at most {MAX_USAGE_RANGE.days} days.")
    return json_response(await asyncio.to_thread(_usage_blocking, user, start, end, group_by))


def _limits_blocking(user_id: str) -> dict[str, Any]:
    settings = current().settings
    user = _user(user_id)
    limit, window = tier_limit(settings, user.tier)
    now = time.time()
    decision = limiter_for(settings).peek(customer_key(user.id), limit, window, now)
    used = usage.month_usage(user.id, now=now)
    resets_at = iso(usage.month_bounds(now)[1])
    quotas = [
        {"name": kind, "period": "month", "limit": usage.quota_limit(settings, user.tier, kind),
         "used": used[kind], "resets_at": resets_at}
        for kind in sorted(usage.QUOTA_KINDS)
    ]
    quotas.append({"name": storage_quota.QUOTA_NAME, "period": "none",
                   "limit": storage_quota.limit_for(settings, user.tier),
                   "used": storage_quota.used_by(user.id), "resets_at": None})
    return {
        "tier": user.tier,
        "rate_limit": {
            "requests_per_hour": limit,
            "remaining": decision.remaining,
            "reset_at": iso(datetime.fromtimestamp(now + decision.reset_s, timezone.utc)),
        },
        "quotas": quotas,
    }


async def get_account_limits(user: str) -> Any:
    """The hourly request budget (and what is left of it) and the monthly quotas."""
    return json_response(await asyncio.to_thread(_limits_blocking, user))


def _upgrade_blocking(user_id: str, tier: str, reason: str) -> dict[str, Any]:
    user = _user(user_id)
    try:
        request = auth.request_upgrade(user, tier, current().settings, reason=reason)
    except auth.UpgradeConflict as exc:
        raise conflict(str(exc)) from None
    except ValueError as exc:  # a tier this server does not offer
        raise unprocessable(str(exc)) from None
    return upgrade_json(request, user.email)


async def request_account_upgrade(user: str, body: dict[str, Any]) -> Any:
    """Ask an operator to move the account to another tier (``202``: recorded, not applied)."""
    result = await asyncio.to_thread(_upgrade_blocking, user, body["tier"], body.get("reason", ""))
    return json_response(result, 202)
