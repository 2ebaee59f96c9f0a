"""Undeclared methods on static paths answer 405 with the resource's ``Allow`` list instead of
reaching a templated sibling's route (``GET /quantize/batch`` is not a job id ``batch``)."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/quantize/batch", "POST"),
    ("GET", "/v1/inference/batch", "POST"),
    ("DELETE", "/v1/quantize/jobs", "GET"),
    ("PUT", "/v1/quantize/job_aaaaaaaaaaaa/cancel", "POST"),
])
def test_undeclared_methods_get_405_before_any_other_check(live_server, method, path, allow):
    r = httpx.request(method, live_server.url + path)  # no credentials: 405 comes first
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    assert r.headers["content-type"] == "application/problem+json"


def test_declared_methods_and_templated_paths_still_route(live_server, customer):
    job = httpx.get(live_server.url + "/v1/quantize/job_aaaaaaaaaaaa", headers=customer.headers)
    assert job.status_code == 404 and job.json()["detail"].startswith("Job ")
    assert httpx.head(live_server.url + "/v1/health").status_code == 200
    assert httpx.get(live_server.url + "/v1/quantize/jobs",
                     headers=customer.headers).status_code == 200
