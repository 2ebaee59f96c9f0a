"""Throw-away databases for tests (ours and anyone's that needs the store).

``temporary_database_url("sqlite", tmp_path)`` yields a URL of a new SQLite
file; ``temporary_database_url("postgres", tmp_path)`` yields a URL on the
server named by ``BITNET_TEST_POSTGRES_URL`` (see ``scripts/start-postgres.sh``)
whose ``search_path`` is a fresh schema, dropped afterwards. Use these for
tests that change the schema.

:func:`temporary_database` yields a migrated database bound to the models.
On PostgreSQL it reuses one migrated schema per test process and empties
every table first (creating and migrating a schema per test costs ~0.3 s;
``TRUNCATE`` a few ms), so tests never see each other's rows but must not
alter the schema. This module does not import pytest; callers skip when
:func:`postgres_test_url` is ``None``.
"""

from __future__ import annotations

import atexit
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import peewee

from bitnet_sdk.store.db import connect, database_proxy
from bitnet_sdk.store.migrate import migrate
from bitnet_sdk.store.models import ALL_MODELS

__all__ = [
    "DATABASE_KINDS",
    "POSTGRES_ENV",
    "postgres_test_url",
    "temporary_database",
    "temporary_database_url",
]

POSTGRES_ENV = "BITNET_TEST_POSTGRES_URL"
DATABASE_KINDS = ("sqlite", "postgres")


def postgres_test_url() -> str | None:
    """The PostgreSQL server to test against, or ``None`` when not configured."""
    return os.environ.get(POSTGRES_ENV) or None


def _schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


def _drop_schema(base: str, schema: str) -> None:
    admin = connect(base, bind=False)
    try:
        admin.execute_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.close()


@contextmanager
def temporary_database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of ``kind`` ("sqlite" or "postgres"), removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{Path(tmp_path) / 'store.db'}"
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    base = postgres_test_url()
    if base is None:
        raise RuntimeError(f"{POSTGRES_ENV} is not set")
    schema = f"t_{secrets.token_hex(6)}"
    admin = connect(base, bind=False)
    try:
        admin.execute_sql(f'CREATE SCHEMA "{schema}"')
    finally:
        admin.close()
    try:
        yield _schema_url(base, schema)
    finally:
        _drop_schema(base, schema)


#: Migrated PostgreSQL schema shared by this process's tests, per server URL.
_shared_schemas: dict[str, str] = {}


def _shared_postgres_url() -> str:
    base = postgres_test_url()
    if base is None:
        raise RuntimeError(f"{POSTGRES_ENV} is not set")
    schema = _shared_schemas.get(base)
    if schema is None:
        schema = f"t_shared_{secrets.token_hex(6)}"
        admin = connect(base, bind=False)
        try:
            admin.execute_sql(f'CREATE SCHEMA "{schema}"')
        finally:
            admin.close()
        atexit.register(_drop_schema, base, schema)
        db = connect(_schema_url(base, schema), bind=False)
        try:
            migrate(db)
        finally:
            db.close()
        _shared_schemas[base] = schema
    return _schema_url(base, schema)


@contextmanager
def temporary_database(kind: str, tmp_path: Path) -> Iterator[peewee.Database]:
    """A migrated, empty database of ``kind`` bound to the models; unbound and closed afterwards."""
    if kind == "postgres":
        db = connect(_shared_postgres_url())
        tables = ", ".join(f'"{m._meta.table_name}"' for m in ALL_MODELS)
        db.execute_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    else:
        with temporary_database_url(kind, tmp_path) as url:
            db = connect(url)
        migrate(db)
    try:
        yield db
    finally:
        db.close()
        database_proxy.initialize(None)
