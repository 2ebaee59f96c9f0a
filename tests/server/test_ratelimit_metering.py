"""Handlers' metering API: adding usage to the current request, quota checks, ``metered``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bitnet_sdk import auth
from bitnet_sdk.config import Settings, TierLimits
from bitnet_sdk.server import metering
from bitnet_sdk.service.accounting.usage import (
    OP_INFERENCE,
    OP_QUANTIZE,
    month_usage,
    record_usage,
    usage_report,
)
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.store import UsageRecord
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database,
)

SETTINGS = Settings(
    data_dir=Path("/nonexistent"), jwt_secret="s" * 40, tiers={"small": TierLimits(100, 2, 50, 10)}
)


@pytest.fixture(params=DATABASE_KINDS)
def user_id(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database(request.param, tmp_path):
        yield auth.create_user("q@example.com", None, tier="small", settings=SETTINGS).id


@pytest.fixture
def request_usage(user_id: str) -> Iterator[metering.RequestUsage]:
    usage = metering.RequestUsage(user_id, "small", "runInference", "req_1")
    token = metering.bind(usage)
    try:
        yield usage
    finally:
        metering.unbind(token)


def test_add_usage_outside_a_request_records_nothing(user_id):
    assert metering.current_usage() is None
    assert metering.add_usage(tokens_out=3) is False
    with pytest.raises(RuntimeError):
        metering.check_quota("inference_tokens", 1, SETTINGS)


def test_amounts_add_up_and_bad_ones_are_refused(request_usage):
    assert metering.add_usage(tokens_in=2, tokens_out=3, compute_units=0.25)
    assert metering.add_usage(tokens_out=4)
    assert (request_usage.tokens_in, request_usage.tokens_out) == (2, 7)
    assert request_usage.pending("inference_tokens") == 9
    with pytest.raises(ValueError):
        metering.add_usage(tokens_out=-1)
    with pytest.raises(ValueError):
        metering.add_usage(compute_units=float("nan"))


def test_quota_allows_up_to_the_limit_counting_this_request(user_id, request_usage):
    record_usage(user_id, OP_INFERENCE, tokens_out=40)
    assert metering.check_quota("inference_tokens", 10, SETTINGS).used == 40
    metering.add_usage(tokens_out=5)  # in flight: 40 + 5 + 6 > 50
    with pytest.raises(ApiError) as refused:
        metering.check_quota("inference_tokens", 6, SETTINGS)
    problem = refused.value
    assert problem.status == 429 and problem.type == "urn:bitnet:problem:quota-exceeded"
    assert problem.ext["quota"] == "inference_tokens" and problem.ext["limit"] == 50
    assert int(problem.headers["Retry-After"]) > 0


def test_spent_quantize_quota_stops_the_next_job(user_id, request_usage):
    from bitnet_sdk.service.accounting.usage import record_quantize_jobs, reserve_quantize_jobs
    from bitnet_sdk.store import write_transaction

    for n in range(2):
        with write_transaction():
            reserve_quantize_jobs(user_id, "small", 1, SETTINGS)
            record_quantize_jobs(user_id, [f"job_{n}"])
    assert month_usage(user_id)["quantize_jobs"] == 2
    with pytest.raises(ApiError) as refused:
        metering.check_quota("quantize_jobs", 1, SETTINGS)
    assert refused.value.status == 429


def test_metered_block_records_its_status(user_id):
    with metering.metered(user_id, "small", "wsGenerate", "req_ws"):
        metering.add_usage(tokens_in=1, tokens_out=2)
    with pytest.raises(ApiError), metering.metered(user_id, "small", "wsGenerate"):
        raise ApiError(422, "Unprocessable Content", "bad")
    with pytest.raises(KeyError), metering.metered(user_id, "small", "wsGenerate"):
        raise KeyError("bug")
    rows = [(r.status_code, r.tokens_out) for r in UsageRecord.select().order_by(UsageRecord.id)]
    assert rows == [(200, 2), (422, 0), (500, 0)]
    assert metering.current_usage() is None


def test_request_records_read_back_like_any_other(user_id):
    """The hot path's plain-SQL insert stores what the ORM would."""
    request = metering.RequestUsage(user_id, "small", "quantizeModel", "req_9",
                                    tokens_in=3, tokens_out=4, compute_units=0.5)
    metering.write_record(request, 202)
    at = utcnow()
    orm = UsageRecord.create(user=user_id, created_at=at, day=at.date(),
                             operation="quantizeModel", tokens_in=3, tokens_out=4,
                             compute_units=0.5, status_code=202, request_id="req_9")
    rows = list(UsageRecord.select().where(UsageRecord.operation == "quantizeModel")
                .order_by(UsageRecord.id))
    assert len(rows) == 2
    fields = ("user_id", "day", "operation", "tokens_in", "tokens_out", "compute_units",
              "status_code", "request_id")
    assert [getattr(rows[0], f) for f in fields] == [getattr(orm, f) for f in fields]
    assert abs((rows[0].created_at - orm.created_at).total_seconds()) < 5
    assert not UsageRecord.select().where(UsageRecord.operation == OP_QUANTIZE).exists()
    ((_, counts),) = usage_report(user_id, orm.created_at - timedelta(hours=1),
                                  orm.created_at + timedelta(hours=1), "day")
    assert (counts.requests, counts.prompt_tokens, counts.completion_tokens) == (2, 6, 8)
