"""API key lifecycle over HTTP: create (shown once), use, list by prefix, scopes, revoke."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from argon2 import PasswordHasher

from bitnet_sdk.auth import passwords
from bitnet_sdk.store import ApiKey
from tests.conftest import make_account

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Argon2id with small parameters: the same code path, much faster than production's."""
    monkeypatch.setattr(passwords, "_default", PasswordHasher(time_cost=1, memory_cost=256))


def _create(server, headers, **body) -> httpx.Response:
    return httpx.post(server.url + "/v1/api-keys", json={"name": "k", **body}, headers=headers)


def _status(server, method: str, path: str, headers, **kw) -> int:
    return httpx.request(method, server.url + "/v1" + path, headers=headers, **kw).status_code


def test_lifecycle(live_server, customer):
    r = _create(live_server, customer.headers, name="ci", scopes=["account", "models:read"])
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    created = r.json()
    key, key_id = created["key"], created["id"]
    assert r.headers["location"] == f"/v1/api-keys/{key_id}"
    assert key.startswith(created["prefix"] + "_")
    # Stored hashed: the database holds neither the key nor its secret part.
    row = ApiKey.get_by_id(key_id)
    secret = key[len(created["prefix"]) + 1 :]
    assert row.prefix == created["prefix"]
    assert all(secret not in str(value) for value in row.__data__.values())

    listed = httpx.get(live_server.url + "/v1/api-keys", headers={"X-API-Key": key})
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["data"]
    assert item["id"] == key_id and "key" not in item and key not in listed.text
    assert item["last_used_at"] is not None  # this very request used it

    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        assert _status(live_server, "GET", "/account", headers) == 200

    r = httpx.delete(f"{live_server.url}/v1/api-keys/{key_id}", headers=customer.headers)
    assert r.status_code == 204, r.text
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        r = httpx.get(live_server.url + "/v1/account", headers=headers)
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
    # Revoking it again: it is gone.
    assert _status(live_server, "DELETE", f"/api-keys/{key_id}", customer.headers) == 404
    assert httpx.get(live_server.url + "/v1/api-keys", headers=customer.headers).json()["data"] == []


def test_key_scopes_are_enforced_per_operation_on_both_headers(live_server, customer):
    key = _create(live_server, customer.headers, scopes=["models:read"]).json()["key"]
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        r = httpx.get(live_server.url + "/v1/account", headers=headers)  # needs `account`
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM, r.text
        # Operations without a scope requirement still accept it.
        assert _status(live_server, "GET", "/auth/me", headers) == 200


def test_a_key_cannot_hold_more_than_its_creator(live_server, customer):
    r = _create(live_server, customer.headers, scopes=["inference", "admin"])
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    # A key holding only `account` cannot mint a key with `inference` either.
    narrow = _create(live_server, customer.headers, scopes=["account"]).json()["key"]
    r = _create(live_server, {"X-API-Key": narrow}, scopes=["inference"])
    assert r.status_code == 403, r.text
    r = _create(live_server, {"X-API-Key": narrow})  # default: the credential's scopes
    assert r.status_code == 201 and r.json()["scopes"] == ["account"]


def test_expiry(live_server, customer):
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    r = _create(live_server, customer.headers, expires_at=past)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    soon = datetime.now(timezone.utc) + timedelta(days=1)
    r = _create(live_server, customer.headers, expires_at=soon.isoformat())
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) == soon
    # Once the time has passed the key stops working.
    ApiKey.update(expires_at=datetime.now(timezone.utc)).where(
        ApiKey.id == r.json()["id"]).execute()
    assert _status(live_server, "GET", "/auth/me", {"X-API-Key": r.json()["key"]}) == 401


def test_other_users_keys_are_invisible(live_server, customer):
    other = make_account(live_server.settings, "other@example.com")
    mine = _create(live_server, customer.headers).json()
    assert _status(live_server, "DELETE", f"/api-keys/{mine['id']}", other.headers) == 404
    listed = httpx.get(live_server.url + "/v1/api-keys", headers=other.headers).json()
    assert listed["data"] == []
    # Still working: the other user's attempt changed nothing.
    assert _status(live_server, "GET", "/auth/me", {"X-API-Key": mine["key"]}) == 200


def test_listing_pages_newest_first(live_server, customer):
    ids = [_create(live_server, customer.headers, name=f"k{i}").json()["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(live_server.url + "/v1/api-keys", params=params,
                         headers=customer.headers).json()
        assert len(page["data"]) <= 2
        seen += [k["id"] for k in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    bad = httpx.get(live_server.url + "/v1/api-keys", params={"cursor": "bm90LWEtY3Vyc29y"},
                    headers=customer.headers)
    assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM
