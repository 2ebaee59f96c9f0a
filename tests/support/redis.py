"""The real Redis the tests use: ``BITNET_TEST_REDIS_URL`` (scripts/start-redis.sh starts one)."""

from __future__ import annotations

import os

import pytest

REDIS_ENV = "BITNET_TEST_REDIS_URL"


def redis_test_url() -> str:
    """The test Redis URL; skips the calling test with the reason when it is not configured."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} not set (start one with scripts/start-redis.sh)")
    return url
