"""The two limiters (database, Redis) make identical decisions for identical histories,
and the Redis one is exact when processes race for the last requests of a budget.

Redis tests run against the real server in ``BITNET_TEST_REDIS_URL``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.service.accounting.limiter import (
    DatabaseLimiter,
    RedisLimiter,
    limiter_for,
)
from bitnet_sdk.store.testing import temporary_database
from tests.support.redis import redis_test_url

T0 = 1_000_000.0


@pytest.fixture
def redis_limiter() -> Iterator[RedisLimiter]:
    limiter = RedisLimiter(redis_test_url(), prefix=f"test:{uuid.uuid4().hex}:")
    yield limiter
    keys = list(limiter.client.scan_iter(match=limiter.prefix + "*"))
    if keys:
        limiter.client.delete(*keys)
    limiter.close()


def _history(limiter: DatabaseLimiter | RedisLimiter) -> list[object]:
    """A history touching every branch: fill, deny, peek, partial expiry, full expiry."""
    out: list[object] = []
    for i in range(5):
        out.append(limiter.check_and_consume("k", 5, 100, now=T0 + i * 7.5))
    out.append(limiter.peek("k", 5, 100, now=T0 + 40))
    for t in (40, 99.9, 100, 100.5, 107.5, 130.25, 500):
        out.append(limiter.check_and_consume("k", 5, 100, now=T0 + t))
        out.append(limiter.peek("k", 5, 100, now=T0 + t))
    out.append(limiter.check_and_consume("zero", 0, 60, now=T0))
    out.append(limiter.check_and_consume("x" * 500, 1, 60, now=T0))  # long keys are hashed
    out.append(limiter.check_and_consume("x" * 500, 1, 60, now=T0 + 1))
    return out


def test_redis_decides_exactly_as_the_database(tmp_path: Path,
                                               redis_limiter: RedisLimiter) -> None:
    with temporary_database("sqlite", tmp_path):
        expected = _history(DatabaseLimiter())
    got = _history(redis_limiter)
    assert got == expected
    assert [d.allowed for d in got[:5]] == [True] * 5  # type: ignore[attr-defined]
    assert not got[5].allowed  # type: ignore[attr-defined]


def test_redis_clock_is_used_without_now(redis_limiter: RedisLimiter) -> None:
    first = redis_limiter.check_and_consume("clock", 2, 3600)
    second = redis_limiter.check_and_consume("clock", 2, 3600)
    denied = redis_limiter.check_and_consume("clock", 2, 3600)
    assert (first.remaining, second.remaining) == (1, 0)
    assert not denied.allowed and 3590 <= denied.retry_after_s <= 3600
    assert redis_limiter.peek("clock", 2, 3600) == denied


_RACER = textwrap.dedent(
    """
    import sys
    from bitnet_sdk.service.accounting.limiter import RedisLimiter
    url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limiter = RedisLimiter(url, prefix=prefix)
    sys.stdin.readline()  # start together
    print(sum(limiter.check_and_consume("shared", 20, 3600).allowed for _ in range(n)))
    """
)


def test_exact_across_processes(redis_limiter: RedisLimiter) -> None:
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, redis_limiter.url,
                                redis_limiter.prefix, "18"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
              for _ in range(2)]
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("go\n")
        racer.stdin.close()
    allowed = []
    for racer in racers:
        assert racer.stdout is not None
        allowed.append(int(racer.stdout.read()))
        racer.stdout.close()
        assert racer.wait(timeout=120) == 0
    assert sum(allowed) == 20
    assert redis_limiter.peek("shared", 20, 3600).remaining == 0


def test_settings_choose_the_limiter() -> None:
    assert isinstance(limiter_for(Settings(demo_model=False)), DatabaseLimiter)
    chosen = limiter_for(Settings(demo_model=False, redis_url="redis://127.0.0.1:1/0"))
    assert isinstance(chosen, RedisLimiter) and chosen.url == "redis://127.0.0.1:1/0"
