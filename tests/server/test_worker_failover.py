"""A ``bitnet worker`` process killed mid-job (SIGKILL: no clean-up at all) and the job
finished by another worker once the lease expired; the server itself runs no jobs here."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.service.jobs.events import events_since
from bitnet_sdk.store import ModelRecord
from bitnet_sdk.testing.synthetic import build_model
from tests.support.jobs import Workers, poll, register_source, wait_job

LEASE_S = 2.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", demo_model=False, workers=0)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    group = Workers(settings, tmp_path, lease_s=LEASE_S)
    try:
        yield group
    finally:
        group.stop_all()


def test_a_killed_workers_job_is_finished_by_another_worker(live_server, customer, workers):
    model_file = build_model(live_server.settings.data_dir / "src.gguf", qtype="f32", n_layers=1)
    source = register_source(live_server.settings, model_file, customer.user_id, "victim")
    r = httpx.post(f"{live_server.url}/v1/quantize", headers=customer.headers,
                   json={"model_id": source, "qtype": "tq2_0", "mode": "async"})
    assert r.status_code == 202, r.text
    location = r.headers["location"]

    doomed = workers.start(step_delay_s=0.3)  # slow enough to be caught mid-job
    job = wait_job(live_server.url, location, customer.headers, timeout=90,
                   until=lambda j: j["status"] == "running" and j["progress"] > 0)
    assert job["attempts"] == 1, workers.logs()
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(timeout=30) == -signal.SIGKILL
    orphan = httpx.get(live_server.url + location, headers=customer.headers).json()
    assert orphan["status"] == "running"  # nobody says otherwise until the lease runs out

    workers.start()
    done = wait_job(live_server.url, location, customer.headers, timeout=90)
    assert done["status"] == "succeeded", (done, workers.logs())
    assert done["attempts"] == 2
    started = [e["data"]["worker"] for e in events_since(done["id"]) if e["type"] == "started"]
    assert len(started) == 2 and started[0] != started[1]
    outputs = ModelRecord.select().where(ModelRecord.source_model == source)
    assert [m.id for m in outputs] == [done["result"]["model_id"]]
    assert not list((live_server.settings.data_dir / "jobs").glob("*.gguf"))


def test_a_stopped_worker_gives_its_job_back(live_server, customer, workers):
    model_file = build_model(live_server.settings.data_dir / "src.gguf", qtype="f32", n_layers=1)
    source = register_source(live_server.settings, model_file, customer.user_id, "paused")
    r = httpx.post(f"{live_server.url}/v1/quantize", headers=customer.headers,
                   json={"model_id": source, "qtype": "tq1_0", "mode": "async"})
    location = r.headers["location"]
    worker = workers.start(step_delay_s=0.3)
    wait_job(live_server.url, location, customer.headers, timeout=90,
             until=lambda j: j["status"] == "running" and j["progress"] > 0)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, workers.logs()
    job = poll(lambda: (j := httpx.get(live_server.url + location,
                                       headers=customer.headers).json())["status"] == "queued"
               and j)
    assert job["attempts"] == 1 and job["message"].startswith("interrupted")
