"""Watching a running quantization: progress and messages while it runs, cancelling it at a
checkpoint, ``/status`` while busy, and in-process event notification. Jobs are slowed down
with ``BITNET_JOB_STEP_DELAY_S`` (a pause at every checkpoint; the real work still runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.service.jobs.events import events_since, wait_for_events
from bitnet_sdk.store import ModelRecord
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account
from tests.support.jobs import register_source, wait_job


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BITNET_JOB_STEP_DELAY_S", "0.1")
    return Settings(data_dir=tmp_path / "data", demo_model=False, webhook_allow_private=True)


@pytest.fixture(scope="module")
def float_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("src") / "f32.gguf", qtype="f32", n_layers=1)


@pytest.fixture
def running(live_server, customer: Account, float_model: Path) -> dict:
    """A queued job, once a worker has reported progress on it."""
    source = register_source(live_server.settings, float_model, customer.user_id, "slow")
    r = httpx.post(f"{live_server.url}/v1/quantize", headers=customer.headers,
                   json={"model_id": source, "qtype": "tq2_0", "mode": "async"})
    assert r.status_code == 202, r.text
    return wait_job(live_server.url, r.headers["location"], customer.headers,
                    until=lambda j: j["status"] == "running" and j["progress"] > 0)


def test_progress_is_visible_while_the_job_runs(live_server, customer, admin, running):
    assert running["message"].startswith("quantizing: ")
    assert running["attempts"] == 1 and running["started_at"] and not running["finished_at"]
    status = httpx.get(f"{live_server.url}/v1/status", headers=admin.headers).json()
    assert status["workers"] == {"count": 1, "busy": 1} and status["queue"]["running"] == 1
    later = wait_job(live_server.url, running["links"]["self"], customer.headers,
                     until=lambda j: j["progress"] > running["progress"])
    assert later["message"] != running["message"] or later["status"] == "succeeded"
    done = wait_job(live_server.url, running["links"]["self"], customer.headers)
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    seen = [e["data"]["progress"] for e in events_since(done["id"]) if e["type"] == "progress"]
    assert seen == sorted(seen) and len(seen) >= 3


def test_a_running_job_stops_at_its_next_checkpoint_when_cancelled(live_server, customer,
                                                                   running):
    url = f"{live_server.url}{running['links']['cancel']}"
    asked = httpx.post(url, headers=customer.headers).json()
    assert asked["cancel_requested"] is True and asked["status"] in ("running", "cancelled")
    done = wait_job(live_server.url, running["links"]["self"], customer.headers)
    assert done["status"] == "cancelled" and "result" not in done
    assert ModelRecord.select().where(ModelRecord.source_model == running["model_id"]).count() == 0


def test_listeners_in_the_process_hear_of_each_event(live_server, customer, running):
    last = events_since(running["id"])[-1]["id"]

    async def next_events() -> list[dict]:
        return await wait_for_events(running["id"], last, timeout_s=20, poll_s=30)

    # poll_s beyond the timeout: events come from the first read or from a notification.
    events = asyncio.run(next_events())
    assert events and all(e["id"] > last for e in events)
    assert events[0]["type"] in ("progress", "succeeded")
