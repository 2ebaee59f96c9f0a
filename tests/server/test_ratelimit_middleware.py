"""The rate-limit middleware on its own: a tiny ASGI app behind it, a real database.

The scope carries what Connexion's security middleware leaves there (the
verified ``token_info``) and the operationId from routing, so what is checked
here is exactly the middleware's own contract: count, refuse, add headers,
meter once, and write the usage record before the last body chunk leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest

from bitnet_sdk import auth
from bitnet_sdk.config import Settings, TierLimits
from bitnet_sdk.server import metering
from bitnet_sdk.server.context import REQUEST_ID_KEY, SCOPE_KEY, AppContext
from bitnet_sdk.server.metrics import Metrics
from bitnet_sdk.server.ratelimit_middleware import RateLimitMiddleware
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.store import RateLimitHit, UsageRecord
from bitnet_sdk.store.testing import temporary_database

LIMIT = 3


@pytest.fixture
def db(tmp_path: Path) -> Iterator[peewee.Database]:
    with temporary_database("sqlite", tmp_path) as database:
        yield database


@pytest.fixture
def ctx(tmp_path: Path, db: peewee.Database) -> AppContext:
    settings = Settings(
        data_dir=tmp_path, jwt_secret="s" * 40, tiers={"tiny": TierLimits(LIMIT, 2, 1000, 100)}
    )
    return AppContext(settings=settings, metrics=Metrics())


@pytest.fixture
def user_id(ctx: AppContext) -> str:
    return auth.create_user("m@example.com", None, tier="tiny", settings=ctx.settings).id


def _scope(ctx: AppContext, user_id: str | None, operation: str = "runInference") -> dict[str, Any]:
    context = (
        {}
        if user_id is None
        else {"user": user_id, "token_info": {"sub": user_id, "tier": "tiny", "scope": "inference"}}
    )
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/x",
        "headers": [],
        "extensions": {
            "connexion_context": context,
            "connexion_routing": {"operation_id": operation},
        },
        SCOPE_KEY: ctx,
        REQUEST_ID_KEY: "req_test",
    }


class Recorder:
    """The ASGI ``send`` at the far end; notes what the database held at each message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.records_at_last_chunk: int | None = None

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.records_at_last_chunk = await asyncio.to_thread(UsageRecord.select().count)
        self.messages.append(message)

    @property
    def headers(self) -> dict[str, str]:
        start = self.messages[0]
        return {k.decode(): v.decode() for k, v in start["headers"]}


def _app(chunks: int = 1, tokens_per_chunk: int = 5, status: int = 200):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for i in range(chunks):
            metering.add_usage(
                tokens_in=1 if i == 0 else 0, tokens_out=tokens_per_chunk, compute_units=0.5
            )
            await send({"type": "http.response.body", "body": b"x", "more_body": i < chunks - 1})

    return app


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def _run(app: Any, scope: dict[str, Any], send: Any) -> None:
    asyncio.run(RateLimitMiddleware(app)(scope, _receive, send))


def test_allowed_request_gets_headers_and_one_record_before_the_last_chunk(ctx, user_id):
    send = Recorder()
    _run(_app(chunks=3), _scope(ctx, user_id), send)
    assert send.headers["ratelimit-policy"] == f'"hour";q={LIMIT};w=3600'
    assert send.headers["ratelimit"] == f'"hour";r={LIMIT - 1};t=3600'
    assert send.records_at_last_chunk == 1  # written before the client saw the end
    (record,) = UsageRecord.select()
    assert (record.operation, record.status_code, record.request_id) == (
        "runInference",
        200,
        "req_test",
    )
    assert (record.tokens_in, record.tokens_out, record.compute_units) == (1, 15, 1.5)


def test_budget_spent_raises_429_problem_and_meters_nothing(ctx, user_id):
    for _ in range(LIMIT):
        _run(_app(), _scope(ctx, user_id), Recorder())
    send = Recorder()
    with pytest.raises(ApiError) as denied:
        _run(_app(), _scope(ctx, user_id), send)
    assert denied.value.status == 429
    assert 3590 <= int(denied.value.headers["Retry-After"]) <= 3600
    assert denied.value.headers["RateLimit"].startswith('"hour";r=0;')
    assert send.messages == []
    assert UsageRecord.select().count() == LIMIT
    assert RateLimitHit.select().count() == LIMIT


def test_problem_from_the_app_keeps_its_headers_and_gains_the_limit_headers(ctx, user_id):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ApiError(404, "Not Found", "nothing", headers={"X-Own": "1"})

    with pytest.raises(ApiError) as raised:
        _run(app, _scope(ctx, user_id, "getModel"), Recorder())
    assert raised.value.headers["X-Own"] == "1"
    assert raised.value.headers["RateLimit"] == f'"hour";r={LIMIT - 1};t=3600'
    (record,) = UsageRecord.select()
    assert (record.operation, record.status_code) == ("getModel", 404)


def test_unauthenticated_requests_pass_untouched(ctx):
    send = Recorder()
    _run(_app(), _scope(ctx, None, "getHealth"), send)
    assert "ratelimit" not in send.headers
    assert UsageRecord.select().count() == 0 and RateLimitHit.select().count() == 0


def test_client_gone_mid_stream_is_still_metered(ctx, user_id):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        metering.add_usage(tokens_out=7)
        raise OSError("client went away")

    with pytest.raises(OSError):
        _run(app, _scope(ctx, user_id, "streamInference"), Recorder())
    (record,) = UsageRecord.select()
    assert (record.tokens_out, record.status_code) == (7, 200)
