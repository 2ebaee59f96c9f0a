"""System endpoints on a live server: health, version, status, metrics, devices, docs."""

from __future__ import annotations

import httpx
import pytest

from bitnet_sdk import __version__

PROBLEM = "application/problem+json"


def test_health_checks_database_and_data_dir(live_server):
    r = httpx.get(live_server.url + "/v1/health")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["data_dir"]["status"] == "ok"
    assert r.headers["x-request-id"]


def test_health_reports_unwritable_data_dir(live_server):
    data_dir = live_server.settings.data_dir
    data_dir.chmod(0o500)
    try:
        r = httpx.get(live_server.url + "/v1/health")
    finally:
        data_dir.chmod(0o700)
    import os

    if os.geteuid() == 0:  # root writes anywhere: the check must still pass honestly
        assert r.status_code == 200
        return
    assert r.status_code == 503
    assert r.json()["checks"]["data_dir"]["status"] == "error"


def test_health_reports_closed_database(live_server):
    ctx = live_server.app.bitnet
    db, ctx.db = ctx.db, None
    try:
        r = httpx.get(live_server.url + "/v1/health")
    finally:
        ctx.db = db
    assert r.status_code == 503
    assert r.headers["retry-after"]
    assert r.json()["checks"]["database"]["status"] == "error"


def test_version(live_server):
    body = httpx.get(live_server.url + "/v1/version").json()
    assert body["version"] == __version__
    assert body["api_version"]


@pytest.mark.parametrize("path", ["/v1/status", "/v1/devices", "/v1/metrics"])
def test_secured_system_endpoints_need_credentials(live_server, path):
    r = httpx.get(live_server.url + path)
    assert r.status_code == 401
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["status"] == 401


@pytest.mark.parametrize("path", ["/v1/status", "/v1/devices", "/v1/metrics"])
def test_customers_cannot_read_operator_endpoints(live_server, customer, path):
    r = httpx.get(live_server.url + path, headers=customer.headers)
    assert r.status_code == 403
    assert r.headers["content-type"] == PROBLEM


def test_status(live_server, admin):
    r = httpx.get(live_server.url + "/v1/status", headers=admin.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["uptime_seconds"] >= 0
    assert body["version"] == __version__
    assert "numpy" in body["backends"]
    assert body["queue"]["depth"] >= 0


def test_devices_match_the_backend_host(live_server, admin):
    from bitnet_sdk import backends

    r = httpx.get(live_server.url + "/v1/devices", headers=admin.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = backends.describe()
    assert body["auto"] == expected["auto"]
    assert [b["name"] for b in body["backends"]] == [b["name"] for b in expected["backends"]]


def test_metrics_count_requests(live_server, admin):
    for _ in range(3):
        httpx.get(live_server.url + "/v1/version")
    r = httpx.get(live_server.url + "/v1/metrics", headers=admin.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    line = next(
        ln for ln in r.text.splitlines()
        if ln.startswith("bitnet_http_requests_total") and 'route="getVersion"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3


def test_swagger_ui_is_served_offline(live_server):
    r = httpx.get(live_server.url + "/v1/docs/")
    assert r.status_code == 200
    assert "swagger-ui" in r.text
    # The page's assets come from this server, not a CDN.
    assert "cdn" not in r.text.lower()
    js = httpx.get(live_server.url + "/v1/docs/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    spec = httpx.get(live_server.url + "/v1/openapi.json")
    assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.0")


def test_unknown_path_is_a_problem(live_server):
    r = httpx.get(live_server.url + "/v1/no-such-thing")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM


def test_request_id_is_echoed(live_server):
    r = httpx.get(live_server.url + "/v1/version", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"


def test_problems_carry_the_request_id(live_server, customer):
    r = httpx.get(live_server.url + "/v1/models/mdl_doesnotexist0000000000000",
                  headers={**customer.headers, "X-Request-ID": "trace-42"})
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["request_id"] == "trace-42" == r.headers["x-request-id"]
    # Problems raised by Connexion itself (security) too.
    r = httpx.get(live_server.url + "/v1/status")
    assert r.json()["request_id"] == r.headers["x-request-id"]

