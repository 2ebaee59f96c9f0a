"""The login throttle's rules on a clock of our choosing, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.service.accounting.login_throttle import LoginThrottle
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database,
)

T0 = 1_000_000.0


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database(request.param, tmp_path) as database:
        yield database


def test_back_off_doubles_per_pair_and_a_success_clears_it(db: peewee.Database) -> None:
    throttle = LoginThrottle(free_failures=3, base_delay_s=2, max_delay_s=60)
    at = T0
    for _ in range(3):
        assert throttle.check("Vic@example.com", "10.0.0.1", now=at).allowed
        throttle.record_failure("vic@example.com", "10.0.0.1", now=at)
    waits = []
    for _ in range(6):
        decision = throttle.check("vic@example.com", "10.0.0.1", now=at)
        assert not decision.allowed
        waits.append(decision.retry_after_s)
        at += decision.retry_after_s
        assert throttle.check("VIC@example.com", "10.0.0.1", now=at).allowed
        throttle.record_failure("vic@example.com", "10.0.0.1", now=at)
    assert waits == [2, 4, 8, 16, 32, 60]
    # Other addresses and other accounts are not slowed by this pair.
    assert throttle.check("vic@example.com", "10.0.0.2", now=at).allowed
    assert throttle.check("eve@example.com", "10.0.0.1", now=at).allowed
    throttle.succeeded("vic@example.com", "10.0.0.1", now=at)
    assert throttle.check("vic@example.com", "10.0.0.1", now=at).allowed


def test_budgets_spare_known_good_addresses(db: peewee.Database) -> None:
    throttle = LoginThrottle(free_failures=100, address_budget=4, account_budget=3, window_s=900)
    throttle.succeeded("vic@example.com", "10.0.0.1", now=T0)
    for host in range(2, 5):  # three addresses, one failure each: the account's budget
        throttle.record_failure("vic@example.com", f"10.0.0.{host}", now=T0)
    refused = throttle.check("vic@example.com", "10.0.0.9", now=T0 + 100)
    assert not refused.allowed and refused.retry_after_s == 800
    assert throttle.check("vic@example.com", "10.0.0.1", now=T0 + 100).allowed  # known-good
    for i in range(4):  # one address, four accounts: the address's budget
        throttle.record_failure(f"user{i}@example.com", "10.0.0.7", now=T0)
    assert not throttle.check("new@example.com", "10.0.0.7", now=T0 + 1).allowed
    throttle.succeeded("old@example.com", "10.0.0.7", now=T0 - 10)
    assert throttle.check("old@example.com", "10.0.0.7", now=T0 + 1).allowed
    assert throttle.check("new@example.com", "10.0.0.7", now=T0 + 900).allowed
    # Known-good expires.
    later = T0 + throttle.known_good_s + 1
    for host in range(2, 5):
        throttle.record_failure("vic@example.com", f"10.0.0.{host}", now=later)
    assert not throttle.check("vic@example.com", "10.0.0.1", now=later).allowed
