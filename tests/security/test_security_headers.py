"""Browser-facing security headers, checked on the live server.

``nosniff``, ``Referrer-Policy`` and frame protection on every response (successes,
problems from each layer, static files, WebSocket refusals, Tornado's own refusals);
a Content-Security-Policy on the Swagger UI pages that still lets the page run (each
inline script's hash is in the policy, every other script and style is same-origin);
``Cache-Control: no-store`` on responses that carry credentials.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.conftest import Account


def assert_base_headers(r: httpx.Response) -> None:
    assert r.headers.get("x-content-type-options") == "nosniff", (r.url, r.headers)
    assert r.headers.get("referrer-policy") == "no-referrer", r.url
    assert r.headers.get("x-frame-options") == "DENY", r.url
    assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), r.url


def test_every_kind_of_response_carries_the_base_headers(live_server: Any,
                                                         customer: Account) -> None:
    url = live_server.url
    responses = [
        httpx.get(url + "/v1/health"),  # public success
        httpx.get(url + "/v1/openapi.json"),  # the spec
        httpx.get(url + "/v1/account", headers=customer.headers),  # authenticated success
        httpx.get(url + "/v1/account"),  # 401 from security
        httpx.get(url + "/v1/nothing-here"),  # 404 from routing
        httpx.post(url + "/v1/inference", headers=customer.headers, json={}),  # 400 validation
        httpx.get(url + "/openai/v1/models"),  # OpenAI-shaped error
        httpx.get(url + "/v1/docs/swagger-ui.css"),  # a static file
        httpx.get(url + "/v1/inference/ws"),  # a WebSocket handshake refusal (Tornado)
        httpx.get(url + "/v1/metrics", headers=customer.headers),  # 403
    ]
    for r in responses:
        assert_base_headers(r)
    assert responses[0].headers["content-security-policy"] == (
        "default-src 'none'; frame-ancestors 'none'")


@pytest.mark.parametrize("page", ["/v1/docs/", "/openai/v1/docs/", "/v1/docs/oauth2-redirect.html"])
def test_docs_pages_have_a_csp_that_admits_exactly_their_own_scripts(live_server: Any,
                                                                     page: str) -> None:
    r = httpx.get(live_server.url + page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert_base_headers(r)
    policy = dict(
        (d.split()[0], d.split()[1:]) for d in r.headers["content-security-policy"].split("; "))
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"]
    inline = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    assert inline, "the page bootstraps with an inline script"
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    # Everything else the page loads comes from this origin, which 'self' admits.
    for src in re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', r.text):
        target = urljoin(str(r.url), src)
        assert target.startswith(live_server.url), src
        assert httpx.get(target).status_code == 200, src
    assert "'self'" in policy["connect-src"]  # the spec and "Try it out"


def test_the_spec_the_docs_load_is_same_origin(live_server: Any) -> None:
    page = httpx.get(live_server.url + "/v1/docs/").text
    (spec_url,) = re.findall(r'url: "([^"]+)"', page)
    assert not re.match(r"^[a-z]+://", spec_url)  # relative: 'self' admits it
    assert httpx.get(urljoin(live_server.url + "/v1/docs/", spec_url)).status_code == 200


def test_responses_carrying_credentials_are_not_stored(live_server: Any,
                                                       customer: Account) -> None:
    url = live_server.url
    login = httpx.post(url + "/v1/auth/login",
                       json={"email": customer.email, "password": customer.password})
    assert login.status_code == 200 and login.headers["cache-control"] == "no-store"
    failed = httpx.post(url + "/v1/auth/login",
                        json={"email": customer.email, "password": "wrong password 1234"})
    assert failed.status_code == 401 and failed.headers["cache-control"] == "no-store"
    key = httpx.post(url + "/v1/api-keys", headers=customer.headers, json={"name": "ci"})
    assert key.status_code == 201 and key.headers["cache-control"] == "no-store"
    listed = httpx.get(url + "/v1/api-keys", headers=customer.headers)
    assert listed.headers["cache-control"] == "no-store"
    me = httpx.get(url + "/v1/auth/me", headers=customer.headers)
    assert me.headers["cache-control"] == "no-store"
    assert "cache-control" not in httpx.get(url + "/v1/health").headers
