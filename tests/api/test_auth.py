"""Login, refresh, logout, /auth/me and sign-up over HTTP on a live server."""

from __future__ import annotations

import time

import httpx
import pytest
from argon2 import PasswordHasher

from bitnet_sdk import auth
from bitnet_sdk.auth import passwords
from tests.conftest import Account

PROBLEM = "application/problem+json"


@pytest.fixture
def settings(settings):
    return settings.with_(open_signup=True)


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Argon2id with small parameters: the same code path, ~100x faster than production's."""
    monkeypatch.setattr(passwords, "_default", PasswordHasher(time_cost=1, memory_cost=256))


def _url(server, path: str) -> str:
    return f"{server.url}/v1{path}"


def _login(server, email: str, password: str, client: httpx.Client | None = None,
           **extra) -> httpx.Response:
    return (client or httpx).post(_url(server, "/auth/login"),
                                  json={"email": email, "password": password, **extra})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    return r.json()


def test_login_gives_working_tokens(live_server, customer: Account):
    r = _login(live_server, customer.email, customer.password)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["refresh_token"].startswith("bnr_")
    me = httpx.get(_url(live_server, "/auth/me"), headers=_bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    info = me.json()
    assert info["id"] == customer.user_id and info["credential_type"] == "access_token"
    assert info["scopes"] == body["scope"].split()
    assert info["api_key_id"] is None
    assert abs(_epoch(info["expires_at"]) - (time.time() + 900)) < 60


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_login_narrowed_scopes_and_json_only(live_server, customer):
    form = {"grant_type": "password", "username": customer.email, "password": customer.password}
    assert httpx.post(_url(live_server, "/auth/login"), data=form).status_code == 415
    r = _login(live_server, customer.email, customer.password, scopes=["inference"])
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert r.json()["scope"] == "inference"
    _problem(httpx.get(_url(live_server, "/account"), headers=_bearer(token)), 403)
    # A token never holds more than its user: asking for admin is refused.
    _problem(_login(live_server, customer.email, customer.password, scopes=["admin"]), 400)


def test_wrong_password_and_unknown_email_look_the_same(live_server, customer):
    wrong = _problem(_login(live_server, customer.email, "not the password"), 401)
    unknown = _problem(_login(live_server, "nobody@example.com", "not the password"), 401)
    assert wrong.pop("request_id") != unknown.pop("request_id")  # per request, by design
    assert wrong == unknown
    assert wrong["type"] == "urn:bitnet:problem:invalid-credentials"


def _from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address))


def test_refresh_rotates_and_reuse_ends_the_session(live_server, customer):
    first = _login(live_server, customer.email, customer.password).json()
    r = httpx.post(_url(live_server, "/auth/refresh"), json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    me = _url(live_server, "/auth/me")
    assert httpx.get(me, headers=_bearer(second["access_token"])).status_code == 200
    # The spent token comes back: someone copied it. The whole session ends.
    reused = httpx.post(_url(live_server, "/auth/refresh"),
                        json={"refresh_token": first["refresh_token"]})
    assert _problem(reused, 401)["type"] == "urn:bitnet:problem:refresh-token-reused"
    _problem(httpx.get(me, headers=_bearer(second["access_token"])), 401)
    _problem(httpx.get(me, headers=_bearer(first["access_token"])), 401)
    later = httpx.post(_url(live_server, "/auth/refresh"),
                       json={"refresh_token": second["refresh_token"]})
    _problem(later, 401)


def test_refresh_narrowed_scopes_and_garbage_tokens(live_server, customer):
    pair = _login(live_server, customer.email, customer.password).json()
    body = {"refresh_token": pair["refresh_token"], "scopes": ["models:read"]}
    r = httpx.post(_url(live_server, "/auth/refresh"), json=body)
    assert r.status_code == 200 and r.json()["scope"] == "models:read", r.text
    for garbage in ("bnr_x.y", "not-a-token", pair["access_token"]):
        r = httpx.post(_url(live_server, "/auth/refresh"), json={"refresh_token": garbage})
        _problem(r, 401)


def test_logout_ends_the_session(live_server, customer):
    pair = _login(live_server, customer.email, customer.password).json()
    r = httpx.post(_url(live_server, "/auth/logout"), headers=_bearer(pair["access_token"]))
    assert r.status_code == 204, r.text
    _problem(httpx.get(_url(live_server, "/auth/me"), headers=_bearer(pair["access_token"])), 401)
    r = httpx.post(_url(live_server, "/auth/refresh"), json={"refresh_token": pair["refresh_token"]})
    _problem(r, 401)


def test_logout_everywhere(live_server, customer):
    here = _login(live_server, customer.email, customer.password).json()
    there = _login(live_server, customer.email, customer.password).json()
    r = httpx.post(_url(live_server, "/auth/logout"), json={"all_sessions": True},
                   headers=_bearer(here["access_token"]))
    assert r.status_code == 204, r.text
    _problem(httpx.get(_url(live_server, "/auth/me"), headers=_bearer(there["access_token"])), 401)
    r = httpx.post(_url(live_server, "/auth/refresh"), json={"refresh_token": there["refresh_token"]})
    _problem(r, 401)


def test_me_and_logout_with_an_api_key(live_server, customer):
    created = httpx.post(_url(live_server, "/api-keys"), headers=customer.headers,
                         json={"name": "bot", "scopes": ["inference"]}).json()
    for headers in (_bearer(created["key"]), {"X-API-Key": created["key"]}):
        me = httpx.get(_url(live_server, "/auth/me"), headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["credential_type"] == "api_key"
        assert me.json()["api_key_id"] == created["id"]
        assert me.json()["scopes"] == ["inference"]
    # Logging out with a key does nothing: keys are revoked, not logged out.
    r = httpx.post(_url(live_server, "/auth/logout"), headers=_bearer(created["key"]))
    assert r.status_code == 204
    assert httpx.get(_url(live_server, "/auth/me"), headers=_bearer(created["key"])).status_code == 200


def test_disabled_account_loses_every_credential(live_server, customer):
    pair = _login(live_server, customer.email, customer.password).json()
    key = httpx.post(_url(live_server, "/api-keys"), headers=customer.headers,
                     json={"name": "bot"}).json()["key"]
    auth.set_disabled(auth.get_user(customer.user_id), True)
    me = _url(live_server, "/auth/me")
    for headers in (customer.headers, _bearer(pair["access_token"]), {"X-API-Key": key}):
        _problem(httpx.get(me, headers=headers), 401)
    r = httpx.post(_url(live_server, "/auth/refresh"), json={"refresh_token": pair["refresh_token"]})
    _problem(r, 401)
    assert _problem(_login(live_server, customer.email, customer.password), 401)["type"] == (
        "urn:bitnet:problem:account-disabled")


def test_signup_when_open(live_server):
    body = {"email": "New.User@Example.com", "password": "a long enough password"}
    r = httpx.post(_url(live_server, "/auth/signup"), json=body)
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email"] == "new.user@example.com" and user["tier"] == "developer"
    assert not user["is_admin"] and user["id"].startswith("usr_")
    assert _login(live_server, "new.user@example.com", body["password"]).status_code == 200
    _problem(httpx.post(_url(live_server, "/auth/signup"), json=body), 409)
    short = {"email": "x@example.com", "password": "short"}
    _problem(httpx.post(_url(live_server, "/auth/signup"), json=short), 400)


def test_signup_closed_by_default(live_server):
    ctx = live_server.app.bitnet
    ctx.settings = ctx.settings.with_(open_signup=False)
    r = httpx.post(_url(live_server, "/auth/signup"),
                   json={"email": "a@example.com", "password": "a long enough password"})
    assert _problem(r, 403)["type"] == "urn:bitnet:problem:signup-closed"
    assert auth.get_user_by_email("a@example.com") is None


def test_signups_per_address_are_limited(live_server):
    url = _url(live_server, "/auth/signup")
    statuses = [
        httpx.post(url, json={"email": f"u{i}@example.com", "password": "x" * 9}).status_code
        for i in range(11)
    ]
    assert statuses == [201] * 10 + [429]
    with _from("127.0.0.9") as elsewhere:
        r = elsewhere.post(url, json={"email": "u99@example.com", "password": "x" * 9})
        assert r.status_code == 201
