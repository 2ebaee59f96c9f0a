"""Usage records written at admission, kept up to date, finalised after their process died."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.auth import create_user
from bitnet_sdk.config import Settings, TierLimits
from bitnet_sdk.service.accounting import open_usage, reservations
from bitnet_sdk.service.accounting.open_usage import STALE_BEATS, Keeper, OpenRecord
from bitnet_sdk.service.accounting.usage import month_usage
from bitnet_sdk.store import User
from bitnet_sdk.store.models import QuotaReservation, UsageRecord
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database,
)

BEAT = 2.0


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def user(db: peewee.Database) -> User:
    return create_user("open@example.com", None)


class Meter:
    """A running request's usage as its process sees it."""

    def __init__(self) -> None:
        self.amounts = (0, 0, 0.0)

    def read(self) -> tuple[int, int, float]:
        return self.amounts


def _open(keeper: Keeper, user: User, request_id: str, meter: Meter) -> OpenRecord:
    return keeper.open(OpenRecord(user.id, "streamInference", request_id, meter.read))


def _record(request_id: str) -> UsageRecord:
    return UsageRecord.get(UsageRecord.request_id == request_id)


def test_a_running_request_has_an_open_record_kept_up_to_date_then_closed(user: User) -> None:
    keeper, meter, t = Keeper(BEAT, thread=False), Meter(), time.time()
    meter.amounts = (5, 0, 0.0)
    entry = _open(keeper, user, "req_running", meter)
    keeper.beat(checkpoint=False, now=t)  # inserted at admission
    row = _record("req_running")
    assert (row.open_owner, row.tokens_in, row.tokens_out) == (keeper.owner, 5, 0)
    meter.amounts = (5, 7, 0.25)
    keeper.beat(now=t + BEAT)
    row = _record("req_running")
    assert (row.tokens_out, row.compute_units) == (7, 0.25)
    assert month_usage(user.id, now=t + BEAT)["inference_tokens"] == 0  # not final yet
    meter.amounts = (5, 9, 0.5)
    assert open_usage.close(entry, 200)
    row = _record("req_running")
    assert (row.open_owner, row.status_code, row.tokens_out) == (None, 200, 9)
    assert month_usage(user.id, now=t + BEAT)["inference_tokens"] == 14
    keeper.beat(now=t + 2 * BEAT)  # a closed entry is forgotten, its record untouched
    assert _record("req_running").tokens_out == 9
    assert UsageRecord.select().count() == 1


def test_a_request_closed_before_its_record_was_inserted_is_written_by_the_caller(
        user: User) -> None:
    keeper = Keeper(BEAT, thread=False)
    entry = _open(keeper, user, "req_quick", Meter())
    assert not open_usage.close(entry, 200)
    keeper.beat()
    assert UsageRecord.select().count() == 0


def test_a_dead_process_records_are_finalised_by_a_live_one(user: User) -> None:
    settings = Settings(tiers={"developer": TierLimits(1000, 2, 10_000, 100)})
    t = time.time()
    held = reservations.reserve(user.id, "developer", 500, 1.0, settings,
                                request_id="req_dead", now=t)
    dead, live = Keeper(BEAT, thread=False), Keeper(BEAT, thread=False)
    meter, other = Meter(), Meter()
    meter.amounts = (3, 11, 0.1)
    _open(dead, user, "req_dead", meter)
    dead.beat(checkpoint=False, now=t)
    other.amounts = (1, 1, 0.0)
    _open(live, user, "req_alive", other)
    live.beat(checkpoint=False, now=t)
    # The dead process never beats again; the live one keeps its own record fresh.
    for beat in range(1, STALE_BEATS + 2):
        live.beat(now=t + beat * BEAT)
    dead_row, live_row = _record("req_dead"), _record("req_alive")
    assert (dead_row.open_owner, dead_row.status_code) == (None, open_usage.STATUS_INTERRUPTED)
    assert (dead_row.tokens_in, dead_row.tokens_out, dead_row.compute_units) == (3, 11, 0.1)
    assert live_row.open_owner == live.owner
    # The record counts now, instead of the hold the dead process could not settle.
    assert not QuotaReservation.select().where(QuotaReservation.id == held.id).exists()
    assert month_usage(user.id, now=t + 10 * BEAT)["inference_tokens"] == 14


def test_a_stalled_process_wrongly_finalised_still_writes_its_exact_usage(user: User) -> None:
    stalled, live, meter, t = Keeper(BEAT, thread=False), Keeper(BEAT, thread=False), Meter(), \
        time.time()
    meter.amounts = (2, 4, 0.0)
    entry = _open(stalled, user, "req_slow", meter)
    stalled.beat(checkpoint=False, now=t)
    live.beat(now=t + (STALE_BEATS + 1) * BEAT)
    assert _record("req_slow").status_code == open_usage.STATUS_INTERRUPTED
    meter.amounts = (2, 30, 0.0)
    stalled.beat(now=t + (STALE_BEATS + 2) * BEAT)  # no longer its record: left alone
    assert _record("req_slow").tokens_out == 4
    assert open_usage.close(entry, 200)
    row = _record("req_slow")
    assert (row.status_code, row.tokens_out, row.open_owner) == (200, 30, None)
    assert UsageRecord.select().count() == 1


def test_a_discarded_record_is_deleted_and_a_later_close_writes_nothing(user: User) -> None:
    keeper, meter = Keeper(BEAT, thread=False), Meter()
    meter.amounts = (4, 0, 0.0)
    entry = _open(keeper, user, "req_gone", meter)
    keeper.beat(checkpoint=False)
    assert _record("req_gone").open_owner == keeper.owner
    open_usage.discard(entry)
    assert not open_usage.close(entry, 200)  # the caller writes its record the usual way
    keeper.beat()
    assert UsageRecord.select().count() == 0
