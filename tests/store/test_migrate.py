"""The migration runner: fresh database, idempotence, later migrations, races, rollback."""

from __future__ import annotations

import threading

import peewee
import pytest

from bitnet_sdk.store import ALL_MODELS, connect, current_version, migrate
from bitnet_sdk.store.migrations import MIGRATIONS, Migration, schema_migrator

EXPECTED_TABLES = {m._meta.table_name for m in ALL_MODELS} | {"schema_version"}


def test_fresh_database_is_migrated_then_noop(empty_url: str) -> None:
    db = connect(empty_url, bind=False)
    try:
        assert current_version(db) == 0
        assert migrate(db) == [m.version for m in MIGRATIONS]
        assert set(db.get_tables()) == EXPECTED_TABLES
        assert current_version(db) == MIGRATIONS[-1].version
        assert migrate(db) == []
        rows = db.execute_sql("SELECT version, name FROM schema_version").fetchall()
        assert [(int(v), n) for v, n in rows] == [(m.version, m.name) for m in MIGRATIONS]
    finally:
        db.close()


def test_models_match_migrated_schema(empty_url: str) -> None:
    """The live model classes describe exactly the tables the migrations build."""
    db = connect(empty_url, bind=False)
    try:
        migrate(db)
        for model in ALL_MODELS:
            table = model._meta.table_name
            columns = {c.name: c for c in db.get_columns(table)}
            fields = {f.column_name: f for f in model._meta.sorted_fields}
            assert set(columns) == set(fields), table
            for name, field in fields.items():
                assert columns[name].null == field.null, f"{table}.{name} nullability"
            indexed = {tuple(ix.columns) for ix in db.get_indexes(table)}
            for fields_, _unique in model._meta.indexes:
                cols = tuple(model._meta.fields[f].column_name for f in fields_)
                assert cols in indexed, f"{table} index {cols}"
    finally:
        db.close()


def _add_column(db: peewee.Database) -> None:
    migrator = schema_migrator(db)
    migrator.add_column("users", "nickname", peewee.CharField(max_length=50, default="")).run()


def test_later_migration_applies_once(empty_url: str) -> None:
    db = connect(empty_url, bind=False)
    calls: list[int] = []

    def second(database: peewee.Database) -> None:
        calls.append(1)
        _add_column(database)

    migrations = [*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "nickname", second)]
    try:
        migrate(db)
        assert migrate(db, migrations) == [migrations[-1].version]
        assert migrate(db, migrations) == []
        assert calls == [1]
        assert "nickname" in {c.name for c in db.get_columns("users")}
        assert current_version(db) == migrations[-1].version
        # Code that only knows the older list still starts (with a warning in the log).
        assert migrate(db) == []
    finally:
        db.close()


def test_failing_migration_leaves_schema_untouched(empty_url: str) -> None:
    db = connect(empty_url, bind=False)

    def broken(database: peewee.Database) -> None:
        _add_column(database)
        raise RuntimeError("half-way failure")

    try:
        migrate(db)
        with pytest.raises(RuntimeError, match="half-way"):
            migrate(db, [*MIGRATIONS, Migration(99, "broken", broken)])
        assert "nickname" not in {c.name for c in db.get_columns("users")}
        assert current_version(db) == MIGRATIONS[-1].version
    finally:
        db.close()


def test_duplicate_versions_refused(empty_url: str) -> None:
    db = connect(empty_url, bind=False)
    try:
        with pytest.raises(ValueError, match="unique"):
            migrate(db, [*MIGRATIONS, Migration(MIGRATIONS[0].version, "again", _add_column)])
    finally:
        db.close()


def test_concurrent_start_applies_each_migration_once(empty_url: str) -> None:
    """Several processes' worth of connections migrate one fresh database at the same moment."""
    n = 3
    barrier = threading.Barrier(n)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        db = connect(empty_url, bind=False)
        try:
            barrier.wait()
            results.append(migrate(db))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [[], [], [m.version for m in MIGRATIONS]]
