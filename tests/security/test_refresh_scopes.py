"""A session narrowed at login stays narrow through every refresh (RFC 6749 §6).

Attack: log in asking for ``inference`` only (a token handed to a less trusted program), then
refresh and hope for all of the account's scopes. Against a live server, through both request
shapes (JSON and the OAuth2 refresh grant form).
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Account, make_account

PROBLEM = "application/problem+json"


@pytest.fixture
def user(live_server) -> Account:
    return make_account(live_server.settings, "narrow@example.com")


def _login(url: str, user: Account, scopes: list[str]) -> dict:
    r = httpx.post(url + "/v1/auth/login",
                   json={"email": user.email, "password": user.password, "scopes": scopes})
    assert r.status_code == 200, r.text
    return r.json()


def _refresh(url: str, token: str, scope: str | None = None) -> httpx.Response:
    body: dict = {"refresh_token": token}
    if scope is not None:
        body["scopes"] = scope.split()
    return httpx.post(url + "/v1/auth/refresh", json=body)


def test_refresh_keeps_the_scopes_granted_at_login(live_server, user):
    url = live_server.url
    tokens = _login(url, user, ["inference"])
    assert tokens["scope"] == "inference"
    for _ in range(3):  # a chain of rotations
        r = _refresh(url, tokens["refresh_token"])
        assert r.status_code == 200, r.text
        tokens = r.json()
        assert tokens["scope"] == "inference"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = httpx.get(url + "/v1/auth/me", headers=bearer)
    assert me.status_code == 200 and me.json()["scopes"] == ["inference"]
    created = httpx.post(url + "/v1/models", json={"name": "x"}, headers=bearer)
    assert created.status_code == 403 and created.headers["content-type"] == PROBLEM


def test_a_refresh_cannot_ask_for_more_and_the_token_survives_the_attempt(live_server, user):
    url = live_server.url
    tokens = _login(url, user, ["inference"])
    r = _refresh(url, tokens["refresh_token"], "inference models:write")
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    assert r.json()["error"] == "invalid_scope"
    again = _refresh(url, tokens["refresh_token"])  # not consumed by the refusal
    assert again.status_code == 200 and again.json()["scope"] == "inference"


def test_a_refresh_may_narrow_one_token_without_shrinking_the_session(live_server, user):
    url = live_server.url
    tokens = _login(url, user, ["models:read", "inference"])
    narrow = _refresh(url, tokens["refresh_token"], "inference")
    assert narrow.status_code == 200 and narrow.json()["scope"] == "inference"
    full = _refresh(url, narrow.json()["refresh_token"])
    assert full.status_code == 200
    assert sorted(full.json()["scope"].split()) == ["inference", "models:read"]
