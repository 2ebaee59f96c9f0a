"""Keyset pagination: cursors round-trip, bad cursors are refused, walks see every row once."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.service.pagination import MAX_LIMIT, Cursor, InvalidCursor, paginate
from bitnet_sdk.store import Job, JobEvent, ModelRecord, User
from bitnet_sdk.store.testing import DATABASE_KINDS, postgres_test_url, temporary_database

T0 = datetime(2025, 4, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip("BITNET_TEST_POSTGRES_URL not set")
    with temporary_database(request.param, tmp_path) as database:
        yield database


def _models(times: list[datetime]) -> list[ModelRecord]:
    return [ModelRecord.create(name=f"m{i}", created_at=t, updated_at=t)
            for i, t in enumerate(times)]


def _walk(limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        page = paginate(ModelRecord.select(), ModelRecord, cursor=cursor, limit=limit)
        assert len(page.items) <= limit
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit
        cursor = page.next_cursor
    raise AssertionError("pagination did not end")


def _b64(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_cursor_round_trip_keeps_microseconds() -> None:
    when = T0 + timedelta(microseconds=123457)
    token = Cursor(when, "mdl_abc").encode()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert Cursor.decode(token) == Cursor(when, "mdl_abc")
    assert Cursor.decode(Cursor(when, 42).encode()).id == 42


@pytest.mark.parametrize("token", [
    "", "!!!", "a" * 600, _b64([1, 2]), _b64({"t": 1}), _b64({"t": "x", "i": "a"}),
    _b64({"t": True, "i": "a"}), _b64({"t": 1, "i": None}), _b64({"t": 1, "i": "a", "x": 0}),
    _b64({"t": 10**30, "i": "a"}), base64.urlsafe_b64encode(b"\xff\xfe").decode(),
])
def test_malformed_cursors_are_refused(token: str) -> None:
    with pytest.raises(InvalidCursor):
        Cursor.decode(token)


def test_walk_returns_every_row_once_newest_first_with_ties(db: peewee.Database) -> None:
    # Several rows share a timestamp: the id breaks the tie, so none is skipped or repeated.
    times = [T0 + timedelta(seconds=s) for s in (0, 1, 1, 1, 2, 3, 3, 5, 5, 5, 5)]
    rows = _models(times)
    expected = [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]
    for limit in (1, 2, 3, 4, len(rows), MAX_LIMIT):
        assert _walk(limit) == expected


def test_rows_added_between_pages_do_not_shift_the_walk(db: peewee.Database) -> None:
    rows = _models([T0 + timedelta(seconds=s) for s in range(6)])
    first = paginate(ModelRecord.select(), ModelRecord, limit=2)
    _models([T0 + timedelta(seconds=100)])  # newer than everything: belongs before page 1
    ModelRecord.delete_by_id(rows[5].id)  # already seen: must not shift later pages
    rest: list[str] = []
    cursor = first.next_cursor
    while cursor:
        page = paginate(ModelRecord.select(), ModelRecord, cursor=cursor, limit=2)
        rest += [r.id for r in page.items]
        cursor = page.next_cursor
    assert [r.id for r in first.items] + rest == [r.id for r in reversed(rows)]


def test_filters_apply_before_paging(db: peewee.Database) -> None:
    rows = _models([T0 + timedelta(seconds=s) for s in range(9)])
    query = ModelRecord.select().where(ModelRecord.name.in_(["m1", "m4", "m7"]))
    page = paginate(query, ModelRecord, limit=2)
    assert [r.name for r in page.items] == ["m7", "m4"]
    last = paginate(query, ModelRecord, cursor=page.next_cursor, limit=2)
    assert [r.name for r in last.items] == ["m1"] and last.next_cursor is None
    assert len(rows) == 9


def test_limit_bounds(db: peewee.Database) -> None:
    for bad in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(ValueError):
            paginate(ModelRecord.select(), ModelRecord, limit=bad)


def test_integer_keys_and_cursor_of_another_list(db: peewee.Database) -> None:
    user = User.create(email="a@example.com")
    job = Job.create(owner=user, kind="quantize")
    events = [JobEvent.create(job=job, type="progress", created_at=T0) for _ in range(5)]
    page = paginate(JobEvent.select(), JobEvent, limit=3)
    assert [e.id for e in page.items] == [e.id for e in reversed(events)][:3]
    rest = paginate(JobEvent.select(), JobEvent, cursor=page.next_cursor, limit=3)
    assert [e.id for e in rest.items] == [events[1].id, events[0].id]
    with pytest.raises(InvalidCursor):  # a string-keyed cursor on an integer-keyed list
        paginate(JobEvent.select(), JobEvent, cursor=Cursor(T0, "mdl_x").encode())
