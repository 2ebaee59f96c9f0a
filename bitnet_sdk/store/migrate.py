"""Bring a database's schema up to date: :func:`migrate`.

The applied versions are rows of a ``schema_version`` table. :func:`migrate`
runs every missing migration in version order inside one write transaction,
after taking a lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped
advisory lock on PostgreSQL), so two processes starting at once never apply a
migration twice: the second waits, then finds nothing to do. Both databases
have transactional DDL, so a failing migration leaves the schema untouched.

Called at server start and by every ``bitnet`` command that opens the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import peewee

from bitnet_sdk.store.db import advisory_lock, resolve, write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.migrations import MIGRATIONS, Migration

__all__ = ["current_version", "migrate"]

log = logging.getLogger(__name__)

_LOCK_NAME = "bitnet_sdk.store.migrate"
_CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL, applied_at VARCHAR(40) NOT NULL)"
)


def _applied_versions(db: peewee.Database) -> set[int]:
    return {int(row[0]) for row in db.execute_sql("SELECT version FROM schema_version")}


def current_version(db: peewee.Database | peewee.DatabaseProxy | None = None) -> int:
    """Highest applied migration version (0 for a database never migrated)."""
    real = resolve(db)
    if "schema_version" not in real.get_tables():
        return 0
    return max(_applied_versions(real), default=0)


def migrate(
    db: peewee.Database | peewee.DatabaseProxy | None = None,
    migrations: Sequence[Migration] | None = None,
) -> list[int]:
    """Apply the migrations not yet applied; return their versions (empty: already current).

    ``migrations`` defaults to :data:`~bitnet_sdk.store.migrations.MIGRATIONS`;
    tests pass their own list. Versions must be unique positive integers.
    """
    real = resolve(db)
    todo = sorted(MIGRATIONS if migrations is None else migrations, key=lambda m: m.version)
    versions = [m.version for m in todo]
    if len(set(versions)) != len(versions) or any(v <= 0 for v in versions):
        raise ValueError(f"migration versions must be unique and positive: {versions}")

    applied_now: list[int] = []
    with write_transaction(real):
        advisory_lock(_LOCK_NAME, real)
        real.execute_sql(_CREATE_VERSION_TABLE)
        applied = _applied_versions(real)
        unknown = sorted(applied - set(versions))
        if unknown:
            log.warning("database has schema versions this code does not know: %s", unknown)
        for migration in todo:
            if migration.version in applied:
                continue
            log.info("applying migration %d: %s", migration.version, migration.name)
            migration.apply(real)
            p = real.param
            real.execute_sql(
                f"INSERT INTO schema_version (version, name, applied_at) VALUES ({p}, {p}, {p})",
                (migration.version, migration.name, utcnow().isoformat()),
            )
            applied_now.append(migration.version)
    return applied_now
