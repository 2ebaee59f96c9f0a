"""schemathesis over the accounts-and-security operations with a customer's credentials.

The contract test fuzzes every operation as an administrator; this runs the
auth, API-key and account operations as an ordinary customer (so scope and
ownership paths are the customer's), with sign-up open. ``logout`` ends the
session of the token it is given, so it is fuzzed with a token of its own.
"""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from bitnet_sdk.auth import passwords
from tests.conftest import make_account
from tests.support.fuzz import run_schemathesis

OPERATIONS = {
    "login", "refreshToken", "signUp", "getCurrentUser", "listApiKeys", "createApiKey",
    "revokeApiKey", "getAccount", "getAccountUsage", "getAccountLimits", "requestAccountUpgrade",
}


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Argon2id with small parameters: the same code path, much faster than production's."""
    monkeypatch.setattr(passwords, "_default", PasswordHasher(time_cost=1, memory_cost=256))


@pytest.fixture
def settings(settings):
    return settings.with_(open_signup=True)


def _report(result) -> str:
    return result.stdout[-15000:] + result.stderr[-3000:]


def test_customer_operations_find_no_failure(live_server):
    # The team tier's budget (10,000/h) is far above the run's few hundred requests.
    customer = make_account(live_server.settings, "fuzz@example.com", tier="team")
    result = run_schemathesis(live_server.url + "/v1", OPERATIONS, customer.headers,
                              max_examples=10)
    assert result.returncode == 0, _report(result)


def test_logout_finds_no_failure(live_server):
    customer = make_account(live_server.settings, "leaving@example.com")
    result = run_schemathesis(live_server.url + "/v1", {"logout"}, customer.headers,
                              max_examples=10)
    assert result.returncode == 0, _report(result)
