"""CORS against a live server: real preflights and real cross-origin requests.

No origins by default; configured origins get exact preflight answers on ``/v1`` and
``/openai/v1`` (the credential and idempotency headers allowed, the rate-limit and
request-id headers exposed), and never ``Access-Control-Allow-Credentials``.
"""

from __future__ import annotations

import httpx
import pytest

from bitnet_sdk.config import Settings, parse_origins
from tests.conftest import make_account

ORIGIN = "https://chat.example.com"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", demo_model=False,
                    cors_origins=(ORIGIN, "http://localhost:3000"))


def preflight(url: str, origin: str, method: str, headers: str) -> httpx.Response:
    return httpx.options(url, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                       "Access-Control-Request-Headers": headers})


def _names(value: str) -> set[str]:
    return {h.strip().lower() for h in value.split(",")}


@pytest.mark.parametrize(("path", "method"), [("/v1/models", "GET"), ("/v1/quantize", "POST"),
                                              ("/openai/v1/chat/completions", "POST")])
def test_preflight_allows_the_configured_origin(live_server, path, method) -> None:
    r = preflight(live_server.url + path, ORIGIN, method,
                  "authorization, x-api-key, idempotency-key, content-type")
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert method.lower() in _names(r.headers["access-control-allow-methods"])
    assert {"authorization", "x-api-key", "idempotency-key", "content-type"} <= \
        _names(r.headers["access-control-allow-headers"])
    assert "access-control-allow-credentials" not in r.headers
    assert "origin" in _names(r.headers.get("vary", ""))


def test_preflight_refuses_other_origins_and_needs_no_credential(live_server) -> None:
    r = preflight(live_server.url + "/v1/models", "https://evil.example", "GET", "authorization")
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_cross_origin_answers_expose_rate_limit_and_request_id(live_server) -> None:
    account = make_account(live_server.settings, "cors@example.com")
    r = httpx.get(live_server.url + "/v1/auth/me", headers={**account.headers, "Origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    exposed = _names(r.headers["access-control-expose-headers"])
    assert {"ratelimit", "ratelimit-policy", "retry-after", "x-request-id", "location"} <= exposed
    assert "ratelimit" in r.headers
    # Errors carry CORS headers too, so a page can read the problem.
    denied = httpx.get(live_server.url + "/openai/v1/models", headers={"Origin": ORIGIN})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.get(live_server.url + "/v1/auth/me",
                      headers={**account.headers, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_by_default(tmp_path) -> None:
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread

    with ServerThread(create_app(Settings(data_dir=tmp_path / "d", demo_model=False))) as server:
        r = preflight(server.url + "/v1/models", ORIGIN, "GET", "authorization")
        assert "access-control-allow-origin" not in r.headers
        plain = httpx.get(server.url + "/v1/health", headers={"Origin": ORIGIN})
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_wildcard_never_comes_with_credentials(tmp_path) -> None:
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread

    settings = Settings(data_dir=tmp_path / "d", demo_model=False, cors_origins=("*",))
    with ServerThread(create_app(settings)) as server:
        r = preflight(server.url + "/v1/models", ORIGIN, "GET", "authorization")
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in r.headers
        cross = httpx.get(server.url + "/v1/health", headers={"Origin": ORIGIN, "Cookie": "a=b"})
        assert cross.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in cross.headers


def test_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITNET_CORS_ORIGINS", "https://a.example, http://localhost:3000/")
    assert Settings.from_env().cors_origins == ("https://a.example", "http://localhost:3000")
    for bad in ("a.example", "https://a.example/path", "ftp://a.example"):
        with pytest.raises(ValueError, match="CORS origin"):
            parse_origins(bad)
