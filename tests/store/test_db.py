"""connect(url), transactions and column types, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.store import (
    ApiKey,
    Job,
    ModelRecord,
    User,
    advisory_lock,
    connect,
    database_proxy,
    is_postgres,
    is_sqlite,
    resolve,
    write_transaction,
)
from bitnet_sdk.store.fields import epoch_to_utc, utc_to_epoch, utcnow
from bitnet_sdk.store.ids import new_id


def test_sqlite_url_creates_folder_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "x.db"
    db = connect(f"sqlite:///{path}", bind=False)
    try:
        assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert path.exists()
        assert is_sqlite(db) and not is_postgres(db)
    finally:
        db.close()


def test_relative_sqlite_url_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = connect("sqlite:///data/rel.db", bind=False)
    try:
        db.execute_sql("CREATE TABLE t (x INTEGER)")
        assert (tmp_path / "data" / "rel.db").exists()
    finally:
        db.close()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "redis://localhost", "nonsense"])
def test_unsupported_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        connect(url, bind=False)


def test_unbound_proxy_gives_clear_error() -> None:
    previous = database_proxy.obj
    database_proxy.initialize(None)
    try:
        with pytest.raises(RuntimeError, match="connect"):
            resolve()
    finally:
        database_proxy.initialize(previous)


def test_json_and_utc_fields_round_trip(db: peewee.Database) -> None:
    owner = User.create(email="o@example.com")
    local = datetime(2024, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    meta = {"layers": 2, "names": ["a", "b"], "nested": {"x": None, "f": 1.5}}
    rec = ModelRecord.create(owner=owner, name="m", tags=["t1", "t2"], metadata=meta, created_at=local)
    got = ModelRecord.get_by_id(rec.id)
    assert got.metadata == meta
    assert got.tags == ["t1", "t2"]
    assert got.validation_report is None
    assert got.created_at == local
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timedelta(0)
    assert got.created_at.hour == 10
    # Comparisons in queries accept aware datetimes in any zone.
    assert ModelRecord.select().where(ModelRecord.created_at < local + timedelta(seconds=1)).count() == 1
    assert ModelRecord.select().where(ModelRecord.created_at > local).count() == 0


def test_naive_datetimes_are_taken_as_utc(db: peewee.Database) -> None:
    user = User.create(email="n@example.com", created_at=datetime(2024, 1, 2, 3, 4, 5))
    got = User.get_by_id(user.id).created_at
    assert got == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_time_helpers() -> None:
    assert utcnow(0.0) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert utc_to_epoch(epoch_to_utc(1234.5)) == 1234.5
    assert utc_to_epoch(datetime(1970, 1, 1, 0, 1)) == 60.0
    assert abs(utcnow().timestamp() - datetime.now(timezone.utc).timestamp()) < 5


def test_ids_are_prefixed_and_distinct() -> None:
    ids = {new_id("usr") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("usr_") and len(i) == 30 for i in ids)


def test_user_email_unique(db: peewee.Database) -> None:
    User.create(email="dup@example.com")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        User.create(email="dup@example.com")


def test_foreign_keys_cascade(db: peewee.Database) -> None:
    user = User.create(email="c@example.com")
    ApiKey.create(id="key_1", user=user, name="k", prefix="bn_1", secret_hash="h")
    child_src = ModelRecord.create(owner=None, name="base")
    derived = ModelRecord.create(owner=user, name="d", source_model=child_src)
    User.delete().where(User.id == user.id).execute()
    assert ApiKey.select().count() == 0
    assert ModelRecord.get_or_none(ModelRecord.id == derived.id) is None
    ModelRecord.delete().where(ModelRecord.id == child_src.id).execute()
    assert ModelRecord.select().count() == 0


def test_source_model_set_null_on_delete(db: peewee.Database) -> None:
    base = ModelRecord.create(name="base")
    derived = ModelRecord.create(name="derived", source_model=base)
    ModelRecord.delete().where(ModelRecord.id == base.id).execute()
    assert ModelRecord.get_by_id(derived.id).source_model_id is None


def test_job_idempotency_key_unique_per_owner_and_kind(db: peewee.Database) -> None:
    a = User.create(email="a@example.com")
    b = User.create(email="b@example.com")
    Job.create(owner=a, kind="quantize", idempotency_key="k1")
    Job.create(owner=a, kind="inference_batch", idempotency_key="k1")
    Job.create(owner=b, kind="quantize", idempotency_key="k1")
    Job.create(owner=a, kind="quantize")  # NULL keys never collide
    Job.create(owner=a, kind="quantize")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        Job.create(owner=a, kind="quantize", idempotency_key="k1")
    assert Job.select().count() == 5


def test_usage_day_is_a_date(db: peewee.Database) -> None:
    from bitnet_sdk.store import UsageRecord

    user = User.create(email="u@example.com")
    UsageRecord.create(user=user, day=date(2024, 5, 6), operation="inference")
    assert UsageRecord.get().day == date(2024, 5, 6)


def test_write_transaction_serialises_read_modify_write(db: peewee.Database) -> None:
    """Threads on their own connections increment a counter; no update may be lost."""
    user = User.create(email="counter@example.com", scopes=[0])
    threads, per_thread = 4, 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                with write_transaction():
                    advisory_lock("test-counter")
                    current = User.get_by_id(user.id).scopes[0]
                    User.update(scopes=[current + 1]).where(User.id == user.id).execute()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            db.close()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    assert User.get_by_id(user.id).scopes == [threads * per_thread]


def test_write_transaction_rolls_back_on_error(db: peewee.Database) -> None:
    with pytest.raises(KeyError), write_transaction():
        User.create(email="gone@example.com")
        raise KeyError("boom")
    assert User.select().count() == 0


def test_nested_write_transaction_is_a_savepoint(db: peewee.Database) -> None:
    with write_transaction():
        User.create(email="outer@example.com")
        with pytest.raises(KeyError), write_transaction():
            User.create(email="inner@example.com")
            raise KeyError("inner fails")
    assert [u.email for u in User.select()] == ["outer@example.com"]
