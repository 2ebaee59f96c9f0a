"""Monthly quantization quotas are reserved, not merely checked.

Attack: an account of a tier with 5 quantization jobs a month fires 24 requests at once (single
jobs and batches of 2). A check followed by a later write lets many through (95 of 50 were once
accepted); a reservation lets through exactly what fits. Run on a live server over SQLite and
over PostgreSQL (``BITNET_TEST_POSTGRES_URL``), with no job workers so every accepted job stays
queued and countable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from bitnet_sdk.server.app import create_app
from bitnet_sdk.server.asgi.testing import ServerThread
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database_url,
)
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account, make_account

QUOTA = 5
TIERS = {**DEFAULT_TIERS, "five": TierLimits(10_000, QUOTA, 1_000_000, 100_000)}
PROBLEM = "application/problem+json"


@pytest.fixture(params=DATABASE_KINDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database_url(request.param, tmp_path) as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url, demo_model=False,
                            tiers=TIERS, workers=0)
        with ServerThread(create_app(settings)) as thread:
            thread.settings = settings
            yield thread


def _source(server: ServerThread, owner: Account, tmp_path: Path) -> str:
    path = tmp_path / "source.gguf"
    build_model(path)
    r = httpx.post(server.url + "/v1/models", headers=owner.headers, data={"name": "source"},
                   files={"file": ("m.gguf", path.read_bytes(), "application/octet-stream")},
                   timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _fire(server: ServerThread, owner: Account, bodies: list[tuple[str, dict]]) -> list[httpx.Response]:
    """Send every request at the same moment, one connection each."""
    start = threading.Barrier(len(bodies))

    def send(item: tuple[str, dict]) -> httpx.Response:
        path, body = item
        with httpx.Client(base_url=server.url + "/v1", headers=owner.headers,
                          timeout=120) as client:
            start.wait()
            return client.post(path, json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def _used(server: ServerThread, owner: Account) -> float:
    limits = httpx.get(server.url + "/v1/account/limits", headers=owner.headers).json()
    return next(q["used"] for q in limits["quotas"] if q["name"] == "quantize_jobs")


def test_concurrent_requests_never_take_more_than_the_quota(server, tmp_path):
    owner = make_account(server.settings, "five@example.com", tier="five")
    source = _source(server, owner, tmp_path)
    job = {"model_id": source, "qtype": "tq2_0", "mode": "async"}
    bodies = [("/quantize", job)] * 16 + [("/quantize/batch", {"items": [job, job]})] * 8

    answers = _fire(server, owner, bodies)

    accepted = sum(len(r.json()["jobs"]) if "jobs" in r.json() else 1
                   for r in answers if r.status_code == 202)
    refused = [r for r in answers if r.status_code != 202]
    assert accepted == QUOTA, [r.status_code for r in answers]
    for r in refused:
        assert r.status_code == 429 and r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["quota"] == "quantize_jobs" and int(r.headers["retry-after"]) >= 1
    assert _used(server, owner) == QUOTA
    jobs = httpx.get(server.url + "/v1/quantize/jobs?limit=100", headers=owner.headers).json()
    assert len(jobs["data"]) == QUOTA  # a refused batch left no job behind


def test_a_job_cancelled_before_it_started_gives_its_place_back(server, tmp_path):
    owner = make_account(server.settings, "cancel@example.com", tier="five")
    source = _source(server, owner, tmp_path)
    job = {"model_id": source, "qtype": "tq2_0", "mode": "async"}
    ids = []
    for _ in range(QUOTA):
        r = httpx.post(server.url + "/v1/quantize", json=job, headers=owner.headers)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    full = httpx.post(server.url + "/v1/quantize", json=job, headers=owner.headers)
    assert full.status_code == 429
    cancelled = httpx.post(server.url + f"/v1/quantize/{ids[0]}/cancel", headers=owner.headers)
    assert cancelled.status_code in (200, 202), cancelled.text
    assert _used(server, owner) == QUOTA - 1
    again = httpx.post(server.url + "/v1/quantize", json=job, headers=owner.headers)
    assert again.status_code == 202, again.text
    assert _used(server, owner) == QUOTA
