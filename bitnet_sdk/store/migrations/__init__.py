"""The ordered list of schema migrations.

A migration is a version number, a name and a function ``apply(db)`` that
changes the schema (and data) from the previous version to its own. It runs
inside the runner's transaction, so it must not commit. Rules:

* Never edit a released migration; add a new one with the next version.
* Describe tables as they are *at that version* (frozen copies inside the
  migration, see ``v0001_initial``), never by importing
  :mod:`bitnet_sdk.store.models`, whose classes follow the latest schema.
* Use :func:`schema_migrator` (``playhouse.migrate``) for column changes so they
  work on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import peewee
from playhouse.migrate import SchemaMigrator

from bitnet_sdk.store.migrations import (
    v0001_initial,
    v0002_session_scopes,
    v0003_reservations_and_sockets,
    v0004_open_usage_and_stream_cancels,
)

__all__ = ["MIGRATIONS", "Migration", "schema_migrator"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[peewee.Database], None]


def schema_migrator(db: peewee.Database) -> SchemaMigrator:
    """The ``playhouse.migrate`` migrator for ``db``'s dialect."""
    return SchemaMigrator.from_database(db)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", v0001_initial.apply),
    Migration(2, "session scopes on refresh tokens", v0002_session_scopes.apply),
    Migration(3, "quota reservations and live sockets", v0003_reservations_and_sockets.apply),
    Migration(4, "open usage records and stream cancellations",
              v0004_open_usage_and_stream_cancels.apply),
)
