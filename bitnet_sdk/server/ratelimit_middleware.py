"""Per-customer rate limits and usage metering for every authenticated request.

Placed after Connexion's security middleware, so the verified credential
(``token_info``: ``sub``, ``tier``) is in the request's Connexion context.
For each authenticated request it:

1. counts the request against the customer's hourly budget
   (:func:`bitnet_sdk.service.accounting.limiter.limiter_for`: in the database, or in
   Redis when configured, so the limit holds across every server process sharing it; run in a worker
   thread, never on the event loop). Tokens and API keys of one user share one
   budget; the size comes from the credential's tier (``Settings.tiers``);
2. when the budget is spent, answers ``429`` problem+json with
   ``Retry-After`` (nothing else runs, nothing is metered);
3. otherwise adds ``RateLimit-Policy`` and ``RateLimit`` headers to the
   response, whatever its status (errors raised as problems included), and
   meters the request (:mod:`bitnet_sdk.server.metering`): its usage record
   is written before the last body chunk is sent, so a client that has read a
   response sees it counted.

Unauthenticated requests pass through untouched. That is a decision, not an
omission: health, version, the docs and the spec are cheap and polled by load
balancers; login has its own throttle on *failed* attempts per account and address
(:class:`~bitnet_sdk.service.accounting.login_throttle.LoginThrottle`);
sign-up has a per-address budget (:mod:`bitnet_sdk.api.auth`); refresh tokens
are 256-bit secrets checked with one indexed lookup, as cheap as rejecting a
bad bearer token. Requests refused by security (401/403) are not counted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from connexion.exceptions import ProblemException

from bitnet_sdk.server import metering
from bitnet_sdk.server.context import REQUEST_ID_KEY, SCOPE_KEY, current
from bitnet_sdk.service.accounting.limiter import limiter_for
from bitnet_sdk.service.accounting.ratelimit import (
    Decision,
    customer_key,
    ratelimit_headers,
    tier_limit,
)
from bitnet_sdk.service.errors import ApiError, too_many_requests

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from bitnet_sdk.config import Settings

__all__ = ["POLICY_NAME", "RateLimitMiddleware", "consume_request"]

log = logging.getLogger(__name__)

#: Name of the policy in the ``RateLimit``/``RateLimit-Policy`` headers.
POLICY_NAME = "hour"


async def consume_request(settings: Settings, user_id: str, tier: str | None) -> Decision:
    """Count one request of ``user_id`` against their tier's budget (off the event loop).

    Also for the WebSocket handler, which Connexion never sees.
    """
    limit, window = tier_limit(settings, tier or "")
    limiter = limiter_for(settings)
    return await asyncio.to_thread(limiter.check_and_consume, customer_key(user_id), limit, window)


def _token_info(scope: Scope) -> dict[str, Any] | None:
    context = (scope.get("extensions") or {}).get("connexion_context") or {}
    info = context.get("token_info")
    if isinstance(info, dict) and isinstance(info.get("sub"), str):
        return info
    return None


def _operation_id(scope: Scope) -> str:
    routing = (scope.get("extensions") or {}).get("connexion_routing") or {}
    return str(routing.get("operation_id") or "unknown")


class RateLimitMiddleware:
    """ASGI middleware; add with ``MiddlewarePosition.BEFORE_VALIDATION``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = _token_info(scope) if scope["type"] == "http" else None
        if info is None:
            await self.app(scope, receive, send)
            return
        ctx = scope.get(SCOPE_KEY) or current()
        user_id, tier = info["sub"], str(info.get("tier") or "")
        decision = await consume_request(ctx.settings, user_id, tier)
        headers = ratelimit_headers(decision, POLICY_NAME)
        if not decision.allowed:
            raise too_many_requests(
                f"Hourly request budget spent; retry in {decision.retry_after_s} seconds.",
                decision.retry_after_s,
                headers,
            )
        request = metering.RequestUsage(
            user_id, tier, _operation_id(scope), scope.get(REQUEST_ID_KEY) or None
        )
        await _Metered(self.app, request, headers).run(scope, receive, send)


class _Metered:
    """One request's pass through the app: headers added, usage written exactly once."""

    def __init__(self, app: ASGIApp, request: metering.RequestUsage, headers: dict[str, str]) -> None:
        self.app = app
        self.request = request
        self.headers = headers
        self.raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.status = 500
        self.recorded = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = metering.bind(self.request)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = int(message["status"])
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in self.raw_headers if h[0] not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                await self.record()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except (ApiError, ProblemException) as exc:  # rendered by the exception middleware
            exc.headers = {**self.headers, **(exc.headers or {})}
            self.status = exc.status
            raise
        finally:
            metering.unbind(token)
            if not self.recorded:  # an error, or the client went away mid-stream
                await asyncio.shield(self.record())

    async def record(self) -> None:
        if self.recorded:
            return
        self.recorded = True
        try:
            await asyncio.to_thread(metering.write_record, self.request, self.status)
        except Exception:  # metering must never break a response
            log.exception("could not record usage of %s", self.request.operation)
