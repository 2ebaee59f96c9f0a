"""Administrator operations against a live server: accounts, tiers, status, upgrade decisions."""

from __future__ import annotations

import httpx
import pytest
from argon2 import PasswordHasher

from bitnet_sdk.auth import passwords
from tests.conftest import make_account

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Argon2id with small parameters: the same code path, much faster than production's."""
    monkeypatch.setattr(passwords, "_default", PasswordHasher(time_cost=1, memory_cost=256))


def _call(server, method: str, path: str, who, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + "/v1" + path, headers=who.headers, **kwargs)


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return response.json()


def _request_upgrade(server, who, tier: str = "team") -> dict:
    r = _call(server, "POST", "/account/upgrade", who, json={"tier": tier, "reason": "evals"})
    assert r.status_code == 202, r.text
    return r.json()


def test_admin_lists_users_with_filters_and_pages(live_server, admin, customer):
    other = make_account(live_server.settings, "Team.Lead@Example.com", tier="team")
    _request_upgrade(live_server, customer)

    everyone = _call(live_server, "GET", "/admin/users", admin).json()
    assert [u["email"] for u in everyone["data"]] == [
        "team.lead@example.com", "dev@example.com", "root@example.com"]
    assert everyone["next_cursor"] is None
    by_id = {u["id"]: u for u in everyone["data"]}
    assert by_id[customer.user_id]["pending_upgrade"]["to_tier"] == "team"
    assert "pending_upgrade" not in by_id[other.user_id]

    first = _call(live_server, "GET", "/admin/users", admin, params={"limit": 2}).json()
    rest = _call(live_server, "GET", "/admin/users", admin,
                 params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [u["id"] for u in first["data"] + rest["data"]] == list(by_id)

    def emails(**params) -> list[str]:
        r = _call(live_server, "GET", "/admin/users", admin, params=params)
        assert r.status_code == 200, r.text
        return [u["email"] for u in r.json()["data"]]

    assert emails(email_contains="LEAD") == ["team.lead@example.com"]
    assert emails(email_contains="%") == []  # matched literally, not as a wildcard
    assert emails(tier="developer") == ["dev@example.com"]
    assert emails(status="disabled") == []
    _problem(_call(live_server, "GET", "/admin/users", admin, params={"cursor": "bm90LWEtY3Vyc29y"}),
             400)


def test_non_admins_are_refused(live_server, customer):
    for method, path in [("GET", "/admin/users"), ("GET", "/admin/upgrades"),
                         ("PATCH", f"/admin/users/{customer.user_id}"),
                         ("POST", "/admin/upgrades/upg_0000000000/approve"),
                         ("POST", "/admin/upgrades/upg_0000000000/reject")]:
        body = {"json": {"tier": "enterprise"}} if method == "PATCH" else {}
        problem = _problem(_call(live_server, method, path, customer, **body), 403)
        assert "admin" in problem["detail"]
    account = _call(live_server, "GET", "/account", customer).json()
    assert account["tier"] == "developer"


def test_admin_changes_a_tier_and_disables_an_account(live_server, admin, customer):
    r = _call(live_server, "PATCH", f"/admin/users/{customer.user_id}", admin,
              json={"tier": "enterprise"})
    assert r.status_code == 200, r.text
    assert (r.json()["tier"], r.json()["status"]) == ("enterprise", "active")
    limits = _call(live_server, "GET", "/account/limits", customer).json()
    assert limits["tier"] == "enterprise"

    disabled = _call(live_server, "PATCH", f"/admin/users/{customer.user_id}", admin,
                     json={"status": "disabled"})
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    _problem(_call(live_server, "GET", "/account", customer), 401)
    listed = _call(live_server, "GET", "/admin/users", admin, params={"status": "disabled"})
    assert [u["id"] for u in listed.json()["data"]] == [customer.user_id]

    enabled = _call(live_server, "PATCH", f"/admin/users/{customer.user_id}", admin,
                    json={"status": "active"})
    assert enabled.json()["status"] == "active"
    assert _call(live_server, "GET", "/account", customer).status_code == 200


def test_bad_updates_get_problems(live_server, admin, customer):
    url = f"/admin/users/{customer.user_id}"
    problem = _problem(_call(live_server, "PATCH", url, admin, json={"tier": "platinum"}), 422)
    assert "platinum" in problem["detail"]
    _problem(_call(live_server, "PATCH", "/admin/users/usr_0000000000", admin,
                   json={"tier": "team"}), 404)
    _problem(_call(live_server, "PATCH", url, admin, json={}), 400)
    _problem(_call(live_server, "PATCH", url, admin, json={"status": "gone"}), 400)
    _problem(_call(live_server, "PATCH", f"/admin/users/{admin.user_id}", admin,
                   json={"status": "disabled"}), 409)
    assert _call(live_server, "GET", "/account", customer).json()["tier"] == "developer"


def test_admin_approves_and_rejects_upgrade_requests(live_server, admin, customer):
    other = make_account(live_server.settings, "other@example.com")
    first = _request_upgrade(live_server, customer, "team")
    second = _request_upgrade(live_server, other, "enterprise")

    listed = _call(live_server, "GET", "/admin/upgrades", admin, params={"status": "pending"})
    assert listed.status_code == 200, listed.text
    assert [(r["id"], r["email"], r["user_id"]) for r in listed.json()["data"]] == [
        (second["id"], "other@example.com", other.user_id),
        (first["id"], "dev@example.com", customer.user_id)]

    approved = _call(live_server, "POST", f"/admin/upgrades/{first['id']}/approve", admin)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_at"]
    account = _call(live_server, "GET", "/account", customer).json()
    assert account["tier"] == "team" and "pending_upgrade" not in account

    rejected = _call(live_server, "POST", f"/admin/upgrades/{second['id']}/reject", admin)
    assert rejected.json()["status"] == "rejected"
    assert _call(live_server, "GET", "/account", other).json()["tier"] == "developer"

    _problem(_call(live_server, "POST", f"/admin/upgrades/{first['id']}/reject", admin), 409)
    _problem(_call(live_server, "POST", "/admin/upgrades/upg_0000000000/approve", admin), 404)
    _problem(_call(live_server, "POST", "/admin/upgrades/not-an-id/approve", admin), 400)
    statuses = [r["status"] for r in _call(live_server, "GET", "/admin/upgrades", admin).json()["data"]]
    assert statuses == ["rejected", "approved"]
    assert _call(live_server, "GET", "/admin/upgrades", admin,
                 params={"status": "pending"}).json()["data"] == []
