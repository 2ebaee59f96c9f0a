"""Throw-away databases for tests (ours and anyone's that needs the store).

``temporary_database_url("sqlite", tmp_path)`` yields a URL of a new SQLite
file; ``temporary_database_url("postgres", tmp_path)`` yields a URL on the
server named by ``BITNET_TEST_POSTGRES_URL`` (see ``scripts/start-postgres.sh``)
whose ``search_path`` is a fresh schema, dropped afterwards, so tests never see
each other's rows. :func:`temporary_database` also connects, binds the models
and migrates. This module does not import pytest; callers decide to skip when
:func:`postgres_test_url` is ``None``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import peewee

from bitnet_sdk.store.db import connect, database_proxy
from bitnet_sdk.store.migrate import migrate

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
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        admin.execute_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


@contextmanager
def temporary_database(kind: str, tmp_path: Path) -> Iterator[peewee.Database]:
    """A migrated database of ``kind`` bound to the models; unbound and closed afterwards."""
    with temporary_database_url(kind, tmp_path) as url:
        db = connect(url)
        try:
            migrate(db)
            yield db
        finally:
            db.close()
            database_proxy.initialize(None)
