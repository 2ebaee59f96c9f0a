"""Fixtures: a migrated database of each kind, settings with a fixed secret, a cheap hasher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from bitnet_sdk.config import Settings
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database,
)

#: A fixed instant (2024-01-01T00:00:00Z) that tests move forward explicitly.
T0 = 1_704_067_200.0


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, jwt_secret="s" * 64 + "-test-secret")


@pytest.fixture
def hasher() -> PasswordHasher:
    """Argon2 with the cheapest parameters: same code paths, milliseconds instead of 50 ms."""
    return PasswordHasher.from_parameters(CHEAPEST)
