"""405 answers list every method of the resource, from the spec."""

from __future__ import annotations

import httpx
import pytest

from bitnet_sdk.server.methods import AllowedMethods

SPEC = {"paths": {
    "/jobs/{job_id}": {"get": {}, "delete": {}, "parameters": []},
    "/jobs/batch": {"post": {}},
    "/jobs": {"get": {}, "post": {}},
}}


def test_most_specific_template_wins() -> None:
    allowed = AllowedMethods(SPEC, "/v1")
    assert allowed.for_path("/v1/jobs/batch") == ["POST"]
    assert allowed.for_path("/v1/jobs/job_123") == ["GET", "DELETE"]
    assert allowed.for_path("/v1/jobs") == ["GET", "POST"]
    assert allowed.for_path("/v1/jobs/a/b") is None
    assert allowed.for_path("/jobs") is None


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("OPTIONS", "/v1/models", "GET, POST"),
    ("PATCH", "/v1/models/mdl_0123456789abc", "GET, PUT, DELETE"),
    ("DELETE", "/v1/models/mdl_0123456789abc/file", "GET, PUT"),
    ("TRACE", "/v1/health", "GET"),
])
def test_live_405_lists_the_resource_methods(live_server, admin, method: str, path: str,
                                             allow: str) -> None:
    r = httpx.request(method, live_server.url + path, headers=admin.headers)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 405
