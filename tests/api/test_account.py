"""The account, its usage, limits and quotas, and tier upgrades approved from the CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest
from argon2 import PasswordHasher

from bitnet_sdk.auth import passwords
from bitnet_sdk.service.accounting.usage import OP_INFERENCE, record_usage

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Argon2id with small parameters: the same code path, much faster than production's."""
    monkeypatch.setattr(passwords, "_default", PasswordHasher(time_cost=1, memory_cost=256))


def _get(server, path: str, headers, **params) -> httpx.Response:
    return httpx.get(server.url + "/v1" + path, headers=headers, params=params)


def test_account(live_server, customer):
    r = _get(live_server, "/account", customer.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["email"], body["tier"]) == (customer.user_id, customer.email,
                                                         "developer")
    assert body["status"] == "active" and not body["is_admin"]
    assert "account" in body["scopes"] and "pending_upgrade" not in body


def test_usage_by_operation_and_day(live_server, customer):
    for _ in range(3):
        assert _get(live_server, "/auth/me", customer.headers).status_code == 200
    missing = httpx.delete(live_server.url + "/v1/api-keys/key_0000000000", headers=customer.headers)
    assert missing.status_code == 404
    # Work outside a request counts toward tokens, not requests.
    record_usage(customer.user_id, OP_INFERENCE, tokens_in=10, tokens_out=32, compute_units=1.5)

    r = _get(live_server, "/account/usage", customer.headers, group_by="operation")
    assert r.status_code == 200, r.text
    report = r.json()
    buckets = {b["key"]: b for b in report["buckets"]}
    assert buckets["getCurrentUser"]["requests"] == 3
    assert buckets["getCurrentUser"]["errors"] == 0
    assert (buckets["revokeApiKey"]["requests"], buckets["revokeApiKey"]["errors"]) == (1, 1)
    assert buckets[OP_INFERENCE]["requests"] == 0
    assert buckets[OP_INFERENCE]["completion_tokens"] == 32
    assert report["totals"] == {"requests": 4, "prompt_tokens": 10, "completion_tokens": 32,
                                "compute_units": 1.5, "errors": 1}

    by_day = _get(live_server, "/account/usage", customer.headers).json()
    today = datetime.now(timezone.utc).date().isoformat()
    assert by_day["group_by"] == "day"
    # The first report is now a request too.
    assert [(b["key"], b["requests"]) for b in by_day["buckets"]] == [(today, 5)]


def test_usage_range_is_checked(live_server, customer):
    now = datetime.now(timezone.utc)
    cases = {
        422: [{"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()},
              {"from": (now - timedelta(days=400)).isoformat()}],
        400: [{"from": "yesterday"}],
    }
    for status, params in cases.items():
        for p in params:
            r = _get(live_server, "/account/usage", customer.headers, **p)
            assert r.status_code == status and r.headers["content-type"] == PROBLEM, (p, r.text)
    past = (date.today() - timedelta(days=40)).isoformat() + "T00:00:00Z"
    r = _get(live_server, "/account/usage", customer.headers, to=past)
    assert r.status_code == 200 and r.json()["buckets"] == []


def test_limits_count_down(live_server, customer):
    first = _get(live_server, "/account/limits", customer.headers).json()
    second = _get(live_server, "/account/limits", customer.headers).json()
    assert first["tier"] == "developer"
    assert first["rate_limit"]["requests_per_hour"] == 1000
    assert (first["rate_limit"]["remaining"], second["rate_limit"]["remaining"]) == (999, 998)
    quotas = {q["name"]: q for q in first["quotas"]}
    assert set(quotas) == {"compute_units", "inference_tokens", "quantize_jobs", "storage_bytes"}
    assert quotas["quantize_jobs"]["limit"] == 50 and quotas["quantize_jobs"]["used"] == 0
    storage = quotas.pop("storage_bytes")
    assert (storage["period"], storage["limit"], storage["used"], storage["resets_at"]) == (
        "none", 10 * 1024**3, 0, None)
    assert all(q["period"] == "month" for q in quotas.values())


def test_upgrade_request_approved_by_the_operator(live_server, customer):
    url = live_server.url + "/v1/account/upgrade"
    r = httpx.post(url, json={"tier": "team", "reason": "nightly evals"}, headers=customer.headers)
    assert r.status_code == 202, r.text
    request = r.json()
    assert (request["from_tier"], request["to_tier"], request["status"]) == (
        "developer", "team", "pending")
    again = httpx.post(url, json={"tier": "enterprise"}, headers=customer.headers)
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    pending = _get(live_server, "/account", customer.headers).json()["pending_upgrade"]
    assert pending["id"] == request["id"]

    cli = subprocess.run(
        [sys.executable, "-m", "bitnet_sdk.cli", "user", "approve-upgrade", request["id"],
         "--data-dir", str(live_server.settings.data_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert cli.returncode == 0, cli.stderr
    account = _get(live_server, "/account", customer.headers).json()
    assert account["tier"] == "team" and "pending_upgrade" not in account
    # The same token now gets the new tier's budget.
    limits = _get(live_server, "/account/limits", customer.headers).json()
    assert limits["rate_limit"]["requests_per_hour"] == 10_000


def test_upgrade_to_an_unknown_or_the_current_tier(live_server, customer):
    url = live_server.url + "/v1/account/upgrade"
    unknown = httpx.post(url, json={"tier": "platinum"}, headers=customer.headers)
    assert unknown.status_code == 422 and unknown.headers["content-type"] == PROBLEM
    same = httpx.post(url, json={"tier": "developer"}, headers=customer.headers)
    assert same.status_code == 409
