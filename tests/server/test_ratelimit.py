"""Tier rate limits on live servers: exactly the tier's count per window, then 429.

The ``tiny`` tier allows 20 requests per hour, so the window is spent in a
test. The same budget is shared by every server process on one database: a
second server runs in a child process on the same SQLite file (and, when
``BITNET_TEST_POSTGRES_URL`` is set, both run on one PostgreSQL schema; when
``BITNET_TEST_REDIS_URL`` is set, both count in one Redis).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from bitnet_sdk.server.app import create_app
from bitnet_sdk.server.asgi.testing import ServerThread
from bitnet_sdk.store.testing import POSTGRES_ENV, postgres_test_url, temporary_database_url
from tests.conftest import make_account
from tests.support.redis import redis_test_url

LIMIT = 20
TIERS = {**DEFAULT_TIERS, "tiny": TierLimits(LIMIT, 5, 10_000, 1_000)}
PROBLEM = "application/problem+json"

_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from bitnet_sdk.config import Settings, TierLimits
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    data_dir, db_url, tiers, redis_url = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    settings = Settings(data_dir=Path(data_dir), database_url=db_url, demo_model=False,
                        tiers={k: TierLimits(**v) for k, v in tiers.items()}, redis_url=redis_url)
    with ServerThread(create_app(settings)) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin
    """
)


def _settings(tmp_path: Path, database_url: str = "", redis_url: str = "") -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, demo_model=False,
                    tiers=TIERS, redis_url=redis_url)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


def _serve(settings: Settings) -> ServerThread:
    server = ServerThread(create_app(settings))
    server.start()
    return server


class ChildServer:
    """The same app in another process, on the same data directory and database."""

    def __init__(self, settings: Settings) -> None:
        tiers = json.dumps({k: asdict(v) for k, v in settings.tiers.items()})
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(settings.data_dir), settings.db_url, tiers,
             settings.redis_url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.process.kill()
            raise RuntimeError(f"child server did not start: {self.process.communicate()[1]}")
        self.url = line

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.stdout.close()
            self.process.stderr.close()


def test_exactly_the_tier_count_then_429_with_retry_after(live_server):
    tiny = make_account(live_server.settings, "tiny@example.com", tier="tiny")
    other = make_account(live_server.settings, "other@example.com", tier="tiny")
    key = httpx.post(live_server.url + "/v1/api-keys", json={"name": "k"},
                     headers=tiny.headers).json()["key"]
    with httpx.Client(base_url=live_server.url + "/v1") as client:
        # Every kind of answer counts and carries the headers: successes, 404s, 400s.
        paths = ["/auth/me", "/api-keys/key_0000000000", "/account/usage?group_by=week"]
        seen = []
        for i in range(1, LIMIT):  # request 1 was the key creation
            method = "DELETE" if i % 3 == 1 else "GET"
            r = client.request(method, paths[i % 3], headers=tiny.headers)
            assert r.status_code in (200, 400, 404), r.text
            assert r.headers["ratelimit-policy"] == f'"hour";q={LIMIT};w=3600'
            seen.append(r.headers["ratelimit"])
        assert seen[-1].startswith('"hour";r=0;')
        assert [int(h.split("r=")[1].split(";")[0]) for h in seen] == list(range(LIMIT - 2, -1, -1))
        for headers in (tiny.headers, {"X-API-Key": key}):  # keys share their owner's budget
            r = client.get("/auth/me", headers=headers)
            assert r.status_code == 429 and r.headers["content-type"] == PROBLEM
            assert 3590 <= int(r.headers["retry-after"]) <= 3600
            assert r.headers["ratelimit"].startswith('"hour";r=0;')
        assert client.get("/auth/me", headers=other.headers).status_code == 200
        health = client.get("/health")  # unauthenticated: neither limited nor counted
        assert health.status_code == 200 and "ratelimit" not in health.headers


def _spend_together(urls: list[str], headers: dict[str, str], requests_each: int) -> list[int]:
    """Send ``requests_each`` requests to each server at once; the statuses seen."""
    statuses: list[int] = []
    lock = threading.Lock()

    def hammer(url: str) -> None:
        with httpx.Client(base_url=url + "/v1", timeout=60) as client:
            for _ in range(requests_each):
                code = client.get("/auth/me", headers=headers).status_code
                with lock:
                    statuses.append(code)

    threads = [threading.Thread(target=hammer, args=(u,)) for u in urls for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def _two_servers(settings: Settings) -> Iterator[list[str]]:
    local = _serve(settings)
    try:
        child = ChildServer(settings)
        try:
            yield [local.url, child.url]
        finally:
            child.close()
    finally:
        local.stop()


@pytest.fixture
def sqlite_servers(settings: Settings) -> Iterator[list[str]]:
    yield from _two_servers(settings)


@pytest.fixture
def postgres_servers(tmp_path: Path) -> Iterator[list[str]]:
    if postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database_url("postgres", tmp_path) as url:
        yield from _two_servers(_settings(tmp_path, url))


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[list[str]]:
    yield from _two_servers(_settings(tmp_path, redis_url=redis_test_url()))


def _check_shared_budget(urls: list[str], settings: Settings) -> tuple[str, list[dict[str, str]]]:
    """36 requests over two servers: exactly the tier's 20 pass; the user id and 429s' headers."""
    tiny = make_account(settings, "tiny@example.com", tier="tiny")
    statuses = _spend_together(urls, tiny.headers, requests_each=9)  # 36 requests in all
    assert sorted(statuses) == [200] * LIMIT + [429] * (36 - LIMIT)
    refusals = []
    for url in urls:  # and both servers keep refusing
        r = httpx.get(url + "/v1/auth/me", headers=tiny.headers)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 3500
        refusals.append({k: r.headers[k] for k in ("ratelimit-policy", "ratelimit", "retry-after")})
    return tiny.user_id, refusals


def test_budget_is_shared_by_two_processes_on_sqlite(sqlite_servers, settings):
    _check_shared_budget(sqlite_servers, settings)


def test_budget_is_shared_by_two_processes_on_postgresql(postgres_servers, tmp_path):
    _check_shared_budget(postgres_servers, _settings(tmp_path))


def test_budget_is_shared_by_two_processes_in_redis(redis_servers, tmp_path):
    import redis

    from bitnet_sdk.store import RateLimitHit

    user_id, refusals = _check_shared_budget(redis_servers, _settings(tmp_path))
    counted = redis.Redis.from_url(redis_test_url())
    try:  # counted in Redis, not in the database
        assert counted.zcard(f"bitnet:ratelimit:user:{user_id}") == LIMIT
    finally:
        counted.close()
    assert RateLimitHit.select().where(RateLimitHit.key == f"user:{user_id}").count() == 0
    for headers in refusals:  # the database limiter's headers, from Redis's counts
        assert headers["ratelimit-policy"] == f'"hour";q={LIMIT};w=3600'
        assert headers["ratelimit"] == f'"hour";r=0;t={headers["retry-after"]}'
