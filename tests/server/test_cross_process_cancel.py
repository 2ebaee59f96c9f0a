"""Cancelling a job that runs in another process (a ``bitnet worker``), from the server.

The worker sits in a long checkpoint pause (``BITNET_JOB_STEP_DELAY_S``), so only a
signal from outside ends the pause early. With Redis the ``cancel_requested`` event
the server writes reaches the worker over pub/sub and stops the job at once: its lease
is long (heartbeats every 200 s), so without the relay the test would run out of time
long before the first heartbeat. Without Redis the database carries the request: the
worker's heartbeat (every second here) finds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account
from tests.support.jobs import Workers, register_source, wait_job
from tests.support.redis import redis_test_url


@pytest.fixture(params=["redis", "database"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, transport: str) -> Settings:
    redis_url = redis_test_url() if transport == "redis" else ""
    return Settings(data_dir=tmp_path / "data", demo_model=False, workers=0, redis_url=redis_url)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path, transport: str) -> Iterator[Workers]:
    lease_s = 600.0 if transport == "redis" else 3.0
    extra = ("--redis", settings.redis_url) if transport == "redis" else ()
    group = Workers(settings, tmp_path, lease_s=lease_s, extra_args=extra)
    try:
        yield group
    finally:
        group.stop_all()


def test_a_job_in_a_worker_process_is_cancelled_from_the_server(
        live_server: Any, customer: Account, workers: Workers) -> None:
    model_file = build_model(live_server.settings.data_dir / "src.gguf", qtype="f32", n_layers=1)
    source = register_source(live_server.settings, model_file, customer.user_id, "src")
    r = httpx.post(f"{live_server.url}/v1/quantize", headers=customer.headers,
                   json={"model_id": source, "qtype": "tq2_0", "mode": "async"})
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    workers.start(step_delay_s=600.0)  # parks at its first checkpoint
    wait_job(live_server.url, location, customer.headers, timeout=60,
             until=lambda j: j["status"] == "running")
    r = httpx.post(f"{live_server.url}{location}/cancel", headers=customer.headers)
    assert r.status_code in (200, 202), r.text
    done = wait_job(live_server.url, location, customer.headers, timeout=60)
    assert done["status"] == "cancelled", (done, workers.logs())
    assert done["attempts"] == 1
