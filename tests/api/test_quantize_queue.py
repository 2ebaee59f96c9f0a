"""Quantization jobs while no worker runs (``workers=0``): queued jobs, cancelling them,
listing and pagination, the webhook address guard, the monthly quota, ``/status``, and jobs
surviving a server restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from bitnet_sdk.server.app import create_app
from bitnet_sdk.server.asgi.testing import ServerThread
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account
from tests.support.jobs import register_source, wait_job

QUOTA = 4


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    tiers = {**DEFAULT_TIERS, "developer": TierLimits(1_000, QUOTA, 1_000_000, 100_000)}
    return Settings(data_dir=tmp_path / "data", demo_model=False, workers=0,
                    webhook_allow_private=False, tiers=tiers)


@pytest.fixture(scope="module")
def float_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("src") / "f32.gguf", qtype="f32", n_layers=1)


@pytest.fixture
def sources(live_server, customer: Account, float_model: Path) -> list[str]:
    return [register_source(live_server.settings, float_model, customer.user_id, name)
            for name in ("one", "two")]


def _queue(live_server, account: Account, model_id: str, **extra: object) -> httpx.Response:
    return httpx.post(f"{live_server.url}/v1/quantize", headers=account.headers, timeout=30,
                      json={"model_id": model_id, "qtype": "tq2_0", "mode": "async", **extra})


def test_a_queued_job_is_cancelled_at_once(live_server, customer, sources):
    job = _queue(live_server, customer, sources[0]).json()
    assert (job["status"], job["attempts"], job["started_at"]) == ("queued", 0, None)
    url = f"{live_server.url}/v1/quantize/{job['id']}/cancel"
    cancelled = httpx.post(url, headers=customer.headers)
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["cancel_requested"]) == ("cancelled", False)
    assert cancelled.json()["finished_at"] is not None
    again = httpx.post(url, headers=customer.headers)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_jobs_list_newest_first_in_pages_with_filters(live_server, customer, sources):
    ids = [_queue(live_server, customer, m).json()["id"] for m in (sources[0], sources[1],
                                                                   sources[0])]
    base = f"{live_server.url}/v1/quantize/jobs"
    page1 = httpx.get(base, params={"limit": 2}, headers=customer.headers).json()
    page2 = httpx.get(base, params={"limit": 2, "cursor": page1["next_cursor"]},
                      headers=customer.headers).json()
    assert [j["id"] for j in page1["data"] + page2["data"]] == ids[::-1]
    assert page2["next_cursor"] is None
    httpx.post(f"{live_server.url}/v1/quantize/{ids[0]}/cancel", headers=customer.headers)
    queued = httpx.get(base, params={"status": "queued"}, headers=customer.headers).json()
    assert [j["id"] for j in queued["data"]] == [ids[2], ids[1]]
    by_model = httpx.get(base, params={"model_id": sources[1]}, headers=customer.headers).json()
    assert [j["id"] for j in by_model["data"]] == [ids[1]]
    bad = httpx.get(base, params={"cursor": "bm90LWEtY3Vyc29y"}, headers=customer.headers)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook",
                                 "http://[::1]:8080/", "http://169.254.169.254/latest"])
def test_webhooks_to_private_addresses_are_refused(live_server, customer, sources, url):
    r = _queue(live_server, customer, sources[0], webhook_url=url)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "webhook_url"
    batch = httpx.post(f"{live_server.url}/v1/quantize/batch", headers=customer.headers, json={
        "items": [{"model_id": sources[0], "qtype": "tq2_0"},
                  {"model_id": sources[1], "qtype": "tq2_0", "webhook_url": url}]})
    assert batch.status_code == 422 and batch.json()["errors"][0]["field"] == "items.1.webhook_url"
    listed = httpx.get(f"{live_server.url}/v1/quantize/jobs", headers=customer.headers).json()
    assert listed["data"] == []


def test_accepted_jobs_count_against_the_monthly_quota(live_server, customer, sources):
    first = _queue(live_server, customer, sources[0], name="kept").json()  # counts 1
    batch = httpx.post(f"{live_server.url}/v1/quantize/batch", headers=customer.headers, json={
        "items": [{"model_id": sources[0], "qtype": "tq1_0"},
                  {"model_id": sources[1], "qtype": "tq1_0"}]})
    assert batch.status_code == 202  # counts 2: 3 of 4 used
    too_many = httpx.post(f"{live_server.url}/v1/quantize/batch", headers=customer.headers, json={
        "items": [{"model_id": sources[0], "qtype": "i2_s"},
                  {"model_id": sources[1], "qtype": "i2_s"}]})
    assert too_many.status_code == 429, too_many.text
    assert too_many.json()["quota"] == "quantize_jobs" and "Retry-After" in too_many.headers
    key = {"Idempotency-Key": "last-one"}
    last = httpx.post(f"{live_server.url}/v1/quantize", headers={**customer.headers, **key},
                      json={"model_id": sources[1], "qtype": "i2_s", "mode": "async"})
    assert last.status_code == 202  # 4 of 4
    refused = _queue(live_server, customer, sources[1])
    assert refused.status_code == 429
    replay = httpx.post(f"{live_server.url}/v1/quantize", headers={**customer.headers, **key},
                        json={"model_id": sources[1], "qtype": "i2_s", "mode": "async"})
    assert replay.status_code == 202 and replay.json()["id"] == last.json()["id"]
    assert first["status"] == "queued"


def test_status_reports_the_queue(live_server, customer, admin, sources):
    for m in sources:
        _queue(live_server, customer, m)
    status = httpx.get(f"{live_server.url}/v1/status", headers=admin.headers).json()
    assert status["queue"]["depth"] == 2 and status["queue"]["running"] == 0
    assert status["queue"]["oldest_queued_at"].endswith("Z")
    assert status["workers"] == {"count": 0, "busy": 0}


def test_queued_jobs_survive_a_restart(live_server, customer, sources):
    job = _queue(live_server, customer, sources[0]).json()
    live_server.stop()
    with ServerThread(create_app(live_server.settings.with_(workers=1))) as restarted:
        done = wait_job(restarted.url, job["links"]["self"], customer.headers)
    assert done["status"] == "succeeded" and done["attempts"] == 1
