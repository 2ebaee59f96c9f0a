"""Sliding-window rate limits in the database: exact counts, retry-after, threads, processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.config import Settings, TierLimits
from bitnet_sdk.service.accounting.ratelimit import (
    Decision,
    check_and_consume,
    customer_key,
    peek,
    policy_header,
    prune_idle,
    ratelimit_header,
    ratelimit_headers,
    reset,
    tier_limit,
)
from bitnet_sdk.store import RateLimitCounter, RateLimitHit, connect, migrate
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database,
    temporary_database_url,
)

T0 = 1_000_000.0


def _require(kind: str) -> None:
    if kind == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    _require(request.param)
    with temporary_database(request.param, tmp_path) as database:
        yield database


def test_exactly_limit_then_denied_with_retry_after(db: peewee.Database) -> None:
    limit, window = 5, 100
    decisions = [check_and_consume("k", limit, window, now=T0 + i) for i in range(limit)]
    assert [d.allowed for d in decisions] == [True] * limit
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    # The oldest request (at T0) leaves the window at T0 + 100.
    assert [d.reset_s for d in decisions] == [100 - i for i in range(limit)]
    denied = check_and_consume("k", limit, window, now=T0 + 10)
    assert denied == Decision(False, limit, 0, 90, 90, window)
    # Denials are not counted: just before the slot opens still denied, at the instant allowed.
    assert not check_and_consume("k", limit, window, now=T0 + 99.5).allowed
    opened = check_and_consume("k", limit, window, now=T0 + 100)
    assert opened.allowed and opened.remaining == 0
    # The next slot opens when the request made at T0 + 1 expires.
    again = check_and_consume("k", limit, window, now=T0 + 100)
    assert not again.allowed and again.retry_after_s == 1


def test_window_slides_fully(db: peewee.Database) -> None:
    for i in range(3):
        assert check_and_consume("k", 3, 60, now=T0 + i).allowed
    assert not check_and_consume("k", 3, 60, now=T0 + 30).allowed
    decision = check_and_consume("k", 3, 60, now=T0 + 500)
    assert decision.allowed and decision.remaining == 2 and decision.reset_s == 60
    assert RateLimitHit.select().count() == 1
    assert RateLimitCounter.get_by_id("k").count == 1


def test_fractional_times_round_up(db: peewee.Database) -> None:
    check_and_consume("k", 1, 10, now=T0 + 0.25)
    denied = check_and_consume("k", 1, 10, now=T0 + 5)
    assert denied.retry_after_s == 6  # 5.25 s, rounded up


def test_lowered_limit_waits_for_enough_expiries(db: peewee.Database) -> None:
    for i in range(6):
        check_and_consume("k", 10, 100, now=T0 + i)
    denied = check_and_consume("k", 3, 100, now=T0 + 10)
    # 6 counted, limit 3: four must expire (T0..T0+3) before one more is allowed.
    assert not denied.allowed and denied.retry_after_s == 93
    assert peek("k", 3, 100, now=T0 + 10).retry_after_s == 93
    assert check_and_consume("k", 3, 100, now=T0 + 103).allowed


def test_keys_are_independent(db: peewee.Database) -> None:
    assert check_and_consume("a", 1, 60, now=T0).allowed
    assert check_and_consume("b", 1, 60, now=T0).allowed
    assert not check_and_consume("a", 1, 60, now=T0).allowed


def test_long_keys_are_hashed_consistently(db: peewee.Database) -> None:
    key = "x" * 1000
    assert check_and_consume(key, 1, 60, now=T0).allowed
    assert not check_and_consume(key, 1, 60, now=T0).allowed
    assert check_and_consume(key[:-1] + "y", 1, 60, now=T0).allowed


def test_zero_limit_always_denies(db: peewee.Database) -> None:
    decision = check_and_consume("k", 0, 60, now=T0)
    assert not decision.allowed and decision.retry_after_s == 60


def test_peek_does_not_consume(db: peewee.Database) -> None:
    assert peek("k", 2, 60, now=T0).remaining == 2
    check_and_consume("k", 2, 60, now=T0)
    assert peek("k", 2, 60, now=T0 + 1) == Decision(True, 2, 1, 59, 0, 60)
    assert peek("k", 2, 60, now=T0 + 1).remaining == 1
    check_and_consume("k", 2, 60, now=T0 + 2)
    assert not peek("k", 2, 60, now=T0 + 3).allowed


def test_reset_and_prune(db: peewee.Database) -> None:
    check_and_consume("old", 5, 60, now=T0)
    check_and_consume("new", 5, 60, now=T0 + 1000)
    assert prune_idle(3600, now=T0 + 3601) == 1
    assert {c.key for c in RateLimitCounter.select()} == {"new"}
    assert {h.key for h in RateLimitHit.select()} == {"new"}
    reset("new")
    assert RateLimitHit.select().count() == 0
    assert check_and_consume("new", 1, 60, now=T0 + 1001).allowed


def test_headers() -> None:
    allowed = Decision(True, 1000, 123, 1800, 0, 3600)
    assert policy_header("hour", 1000, 3600) == '"hour";q=1000;w=3600'
    assert ratelimit_header("hour", allowed) == '"hour";r=123;t=1800'
    assert ratelimit_headers(allowed) == {
        "RateLimit-Policy": '"hour";q=1000;w=3600',
        "RateLimit": '"hour";r=123;t=1800',
    }
    denied = Decision(False, 10, 0, 42, 42, 900)
    assert ratelimit_headers(denied, "login")["Retry-After"] == "42"
    assert policy_header('a"b\\c', 1, 1) == '"a\\"b\\\\c";q=1;w=1'
    with pytest.raises(ValueError):
        policy_header("naïve", 1, 1)


def test_tier_limits_from_settings() -> None:
    settings = Settings()
    assert tier_limit(settings, "developer") == (1_000, 3600)
    assert tier_limit(settings, "team") == (10_000, 3600)
    assert tier_limit(settings, "enterprise") == (100_000, 3600)
    assert tier_limit(settings, "unknown") == (1_000, 3600)
    custom = settings.with_(tiers={"tiny": TierLimits(7, 1, 1, 1)})
    assert tier_limit(custom, "tiny") == (7, 3600)
    assert customer_key("usr_1") == "user:usr_1"


def test_threads_never_exceed_limit(db: peewee.Database) -> None:
    limit, threads, attempts = 40, 4, 20
    barrier = threading.Barrier(threads)
    allowed: list[int] = []
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            barrier.wait()
            allowed.append(
                sum(check_and_consume("shared", limit, 3600, now=T0).allowed for _ in range(attempts))
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            db.close()

    pool = [threading.Thread(target=hammer) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    assert sum(allowed) == limit
    assert RateLimitHit.select().where(RateLimitHit.key == "shared").count() == limit


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bitnet_sdk.store import connect
    from bitnet_sdk.service.accounting.ratelimit import check_and_consume
    url, ready, go, attempts = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    db = connect(url)
    db.connect()
    ready.touch()
    deadline = time.time() + 60
    while not go.exists() and time.time() < deadline:
        time.sleep(0.005)
    allowed = sum(check_and_consume("shared", 50, 3600, now=1000.0).allowed for _ in range(attempts))
    print(allowed)
    """
)


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_two_processes_never_exceed_limit(kind: str, tmp_path: Path) -> None:
    _require(kind)
    with temporary_database_url(kind, tmp_path) as url:
        setup = connect(url, bind=False)
        migrate(setup)
        setup.close()
        go = tmp_path / "go"
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, url, str(tmp_path / f"ready{i}"), str(go), "40"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        deadline = time.time() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
            assert time.time() < deadline, "children did not start"
            assert all(c.poll() is None for c in children), [c.communicate() for c in children]
            time.sleep(0.01)
        go.touch()
        outputs = [c.communicate(timeout=120) for c in children]
        assert all(c.returncode == 0 for c in children), outputs
        counts = [int(out.strip()) for out, _ in outputs]
        assert sum(counts) == 50, counts
