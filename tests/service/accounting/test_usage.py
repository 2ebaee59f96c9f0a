"""Usage records, daily aggregation and monthly quotas."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.auth import create_user
from bitnet_sdk.config import Settings, TierLimits
from bitnet_sdk.service.accounting.usage import (
    OP_INFERENCE,
    OP_QUANTIZE,
    DailyUsage,
    QuotaExceeded,
    check_quota,
    month_bounds,
    month_usage,
    quota_limit,
    record_usage,
    usage_by_day,
)
from bitnet_sdk.store import UsageRecord, User
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database,
)


def _ts(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def user(db: peewee.Database) -> User:
    return create_user("meter@example.com", None)


@pytest.fixture
def settings() -> Settings:
    return Settings(tiers={"developer": TierLimits(1000, 2, 100, 10), "team": TierLimits(1, 5, 1000, 50)})


def test_record_usage(user: User) -> None:
    record_usage(user.id, OP_INFERENCE, tokens_in=3, tokens_out=4, compute_units=0.5,
                 request_id="req_1", now=_ts(2024, 2, 29, 23, 59, 59))
    rec = UsageRecord.get(UsageRecord.request_id == "req_1")
    assert rec.day == date(2024, 2, 29)
    assert (rec.user_id, rec.operation, rec.tokens_in, rec.tokens_out, rec.compute_units,
            rec.status_code) == (user.id, OP_INFERENCE, 3, 4, 0.5, 200)
    with pytest.raises(ValueError):
        record_usage(user.id, OP_INFERENCE, tokens_in=-1)


def test_usage_by_day_groups_and_filters(user: User) -> None:
    other = create_user("other@example.com", None)
    record_usage(user.id, OP_INFERENCE, tokens_in=10, tokens_out=5, compute_units=1.5, now=_ts(2024, 3, 1, 1))
    record_usage(user.id, OP_INFERENCE, tokens_in=1, tokens_out=2, compute_units=0.5, now=_ts(2024, 3, 1, 23))
    record_usage(user.id, OP_QUANTIZE, compute_units=7, now=_ts(2024, 3, 1, 12))
    record_usage(user.id, OP_INFERENCE, tokens_in=100, now=_ts(2024, 3, 2, 0, 0, 1))
    record_usage(user.id, OP_INFERENCE, tokens_in=999, now=_ts(2024, 3, 5))  # outside the period
    record_usage(other.id, OP_INFERENCE, tokens_in=999, now=_ts(2024, 3, 1))  # someone else
    report = usage_by_day(user.id, date(2024, 3, 1), date(2024, 3, 2))
    assert report == [
        DailyUsage(date(2024, 3, 1), OP_INFERENCE, 2, 11, 7, 2.0),
        DailyUsage(date(2024, 3, 1), OP_QUANTIZE, 1, 0, 0, 7.0),
        DailyUsage(date(2024, 3, 2), OP_INFERENCE, 1, 100, 0, 0.0),
    ]
    assert usage_by_day(user.id, date(2024, 4, 1), date(2024, 4, 30)) == []


def test_month_bounds() -> None:
    assert month_bounds(_ts(2024, 12, 31, 23, 59)) == (
        datetime(2024, 12, 1, tzinfo=timezone.utc),
        datetime(2025, 1, 1, tzinfo=timezone.utc),
    )
    assert month_bounds(_ts(2024, 2, 1))[1] == datetime(2024, 3, 1, tzinfo=timezone.utc)


def test_month_usage_counts_only_this_month(user: User) -> None:
    record_usage(user.id, OP_QUANTIZE, now=_ts(2024, 2, 29, 23, 59))  # last month
    record_usage(user.id, OP_QUANTIZE, now=_ts(2024, 3, 1))
    record_usage(user.id, OP_QUANTIZE, status_code=429, now=_ts(2024, 3, 2))  # refused: not counted
    record_usage(user.id, OP_INFERENCE, tokens_in=5, tokens_out=6, compute_units=1.25, now=_ts(2024, 3, 3))
    assert month_usage(user.id, now=_ts(2024, 3, 15)) == {
        "quantize_jobs": 1,
        "inference_tokens": 11,
        "compute_units": 1.25,
    }
    assert month_usage(user.id, now=_ts(2024, 4, 1)) == {
        "quantize_jobs": 0,
        "inference_tokens": 0,
        "compute_units": 0.0,
    }


def test_check_quota(user: User, settings: Settings) -> None:
    now = _ts(2024, 3, 10)
    status = check_quota(user, "inference_tokens", 100, settings, now=now)
    assert (status.used, status.limit, status.remaining) == (0, 100, 100)
    assert status.resets_at == datetime(2024, 4, 1, tzinfo=timezone.utc)
    record_usage(user.id, OP_INFERENCE, tokens_in=60, tokens_out=30, now=now)
    check_quota(user, "inference_tokens", 10, settings, now=now)
    with pytest.raises(QuotaExceeded) as info:
        check_quota(user, "inference_tokens", 11, settings, now=now)
    detail = info.value.detail
    assert (detail.kind, detail.used, detail.limit, detail.requested) == ("inference_tokens", 90, 100, 11)
    assert info.value.status == 429
    assert detail.as_problem_detail()["resets_at"] == "2024-04-01T00:00:00+00:00"
    # A new month starts from zero.
    check_quota(user, "inference_tokens", 100, settings, now=_ts(2024, 4, 1))


def test_quantize_job_quota(user: User, settings: Settings) -> None:
    now = _ts(2024, 3, 10)
    for _ in range(2):
        check_quota(user, "quantize_jobs", 1, settings, now=now)
        record_usage(user.id, OP_QUANTIZE, status_code=202, now=now)
    with pytest.raises(QuotaExceeded):
        check_quota(user, "quantize_jobs", 1, settings, now=now)


def test_quota_limits_follow_tier(user: User, settings: Settings) -> None:
    assert quota_limit(settings, "developer", "compute_units") == 10
    assert quota_limit(settings, "team", "compute_units") == 50
    assert quota_limit(settings, "unknown", "compute_units") == 10
    with pytest.raises(ValueError):
        quota_limit(settings, "team", "gpu_hours")
    record_usage(user.id, OP_INFERENCE, compute_units=20, now=_ts(2024, 3, 1))
    with pytest.raises(QuotaExceeded):
        check_quota(user, "compute_units", 1, settings, now=_ts(2024, 3, 2))
    User.update(tier="team").where(User.id == user.id).execute()
    check_quota(User.get_by_id(user.id), "compute_units", 1, settings, now=_ts(2024, 3, 2))
