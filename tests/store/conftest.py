"""Fixtures: a migrated database of each kind (PostgreSQL only when configured)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database,
    temporary_database_url,
)


def _require(kind: str) -> None:
    if kind == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    """A migrated database bound to the models."""
    _require(request.param)
    with temporary_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture(params=DATABASE_KINDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, never migrated database."""
    _require(request.param)
    with temporary_database_url(request.param, tmp_path) as url:
        yield url
