"""The worker pool on both databases: real quantization jobs end to end, cancellation at a
checkpoint, retries with back-off, lost leases, graceful stop, and safe re-runs."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.service.jobs import queue as jobs
from bitnet_sdk.service.jobs.events import events_since
from bitnet_sdk.service.jobs.kinds import RUNNERS, JobContext, JobFailed, problem, run_quantize
from bitnet_sdk.service.jobs.queue import JobSpec
from bitnet_sdk.service.jobs.workers import WorkerOptions, WorkerPool
from bitnet_sdk.service.registry import models as registry
from bitnet_sdk.store import Job, ModelRecord, User
from bitnet_sdk.store.testing import DATABASE_KINDS, postgres_test_url, temporary_database
from bitnet_sdk.testing.synthetic import build_model


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip("BITNET_TEST_POSTGRES_URL not set (start one with scripts/start-postgres.sh)")
    with temporary_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture(scope="module")
def float_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("src") / "f32.gguf", qtype="f32", n_layers=1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", demo_model=False)


@pytest.fixture
def owner(db: peewee.Database) -> str:
    return User.create(email="owner@example.com").id


@pytest.fixture
def source(settings: Settings, owner: str, float_model: Path) -> ModelRecord:
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    staged = settings.data_dir / "staged.gguf"
    shutil.copyfile(float_model, staged)
    return registry.register_file(settings, staged, owner_id=owner, name="tiny")


def _pool(settings: Settings, **options: Any) -> WorkerPool:
    opts = {"concurrency": 1, "poll_s": 0.05, "lease_s": 5.0, "retry_base_s": 0.05,
            "progress_interval_s": 0.0, **options}
    return WorkerPool(settings, WorkerOptions(**opts))


def _queue(owner: str, kind: str, params: dict[str, Any]) -> Job:
    (job,), _ = jobs.create_jobs(owner, kind, [JobSpec(params=params)],
                                 body_fingerprint=jobs.fingerprint(params), operation="test")
    return job


def _quantize_params(source: ModelRecord, **request: Any) -> dict[str, Any]:
    return {"request": {"model_id": source.id, "qtype": "tq2_0", **request},
            "model_id": source.id}


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _status(job_id: str) -> str:
    return Job.get_by_id(job_id).status


def test_a_quantize_job_registers_the_output_as_the_owners_model(
        settings: Settings, owner: str, source: ModelRecord) -> None:
    job = _queue(owner, "quantize", _quantize_params(source))
    pool = _pool(settings).start()
    try:
        _wait(lambda: _status(job.id) in jobs.FINAL_STATUSES)
    finally:
        pool.stop()
    done = Job.get_by_id(job.id)
    assert done.status == "succeeded", done.error
    output = ModelRecord.get_by_id(done.result["model_id"])
    assert (output.owner_id, output.source_model_id, output.qtype) == (owner, source.id, "tq2_0")
    assert output.name == "tiny-tq2_0" and output.status == "ready"
    assert output.quantization_report["job_id"] == job.id
    assert (settings.data_dir / output.file_path).stat().st_size == done.result["size_bytes"]
    assert done.result["size_bytes"] < done.result["source_size_bytes"]
    assert done.result["tensors_quantized"] == output.quantization_report["tensors_quantized"] > 0
    progress = [e["data"]["progress"] for e in events_since(job.id) if e["type"] == "progress"]
    assert progress == sorted(progress) and len(set(progress)) > 3 and progress[-1] < 1
    assert not list((settings.data_dir / "jobs").iterdir())  # no work file left


def test_running_a_quantize_job_again_finds_the_registered_output(
        settings: Settings, owner: str, source: ModelRecord) -> None:
    def ctx(job_id: str) -> JobContext:
        return JobContext(job_id=job_id, owner_id=owner, params=_quantize_params(source),
                          attempt=1, settings=settings, report=lambda f, m: False,
                          inference=lambda: None)

    first = run_quantize(ctx("job_aaaaaaaaaaaa"))
    again = run_quantize(ctx("job_aaaaaaaaaaaa"))
    other = run_quantize(ctx("job_bbbbbbbbbbbb"))
    assert again == first
    assert other["model_id"] != first["model_id"]
    assert ModelRecord.get_by_id(other["model_id"]).name == "tiny-tq2_0-2"


def test_taken_names_and_missing_sources_fail_without_retry(
        settings: Settings, owner: str, source: ModelRecord) -> None:
    taken = _queue(owner, "quantize", _quantize_params(source, name="tiny"))
    gone = _queue(owner, "quantize", _quantize_params(source) | {"request": {
        "model_id": "mdl_doesnotexist00", "qtype": "tq2_0"}})
    pool = _pool(settings).start()
    try:
        _wait(lambda: all(_status(j.id) in jobs.FINAL_STATUSES for j in (taken, gone)))
    finally:
        pool.stop()
    taken, gone = Job.get_by_id(taken.id), Job.get_by_id(gone.id)
    assert (taken.status, taken.attempts, taken.error["status"]) == ("failed", 1, 409)
    assert (gone.status, gone.attempts, gone.error["status"]) == ("failed", 1, 409)


def test_cancelling_a_running_job_stops_it_at_a_checkpoint(
        settings: Settings, owner: str, source: ModelRecord) -> None:
    job = _queue(owner, "quantize", _quantize_params(source))
    pool = _pool(settings, step_delay_s=0.1, heartbeat_s=0.1).start()
    try:
        _wait(lambda: Job.get_by_id(job.id).progress > 0)
        assert pool.worker_stats() == {"count": 1, "busy": 1}
        jobs.request_cancel(job.id, owner_id=owner, kind="quantize")
        _wait(lambda: _status(job.id) in jobs.FINAL_STATUSES)
    finally:
        pool.stop()
    assert _status(job.id) == "cancelled"
    assert ModelRecord.select().where(ModelRecord.source_model == source.id).count() == 0
    assert not list((settings.data_dir / "jobs").iterdir())


@pytest.fixture
def test_kind(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[JobContext], Any]], str]:
    """Register a job kind for one test (job kinds are an open table)."""
    def register(runner: Callable[[JobContext], Any]) -> str:
        monkeypatch.setitem(RUNNERS, "test_kind", runner)
        return "test_kind"
    return register


def test_faults_are_retried_with_back_off_until_max_attempts(
        settings: Settings, owner: str, test_kind: Any) -> None:
    calls: list[int] = []

    def flaky(ctx: JobContext) -> dict[str, Any]:
        calls.append(ctx.attempt)
        if ctx.params["fail_times"] >= ctx.attempt:
            raise OSError("disk full")
        return {"attempt": ctx.attempt}

    kind = test_kind(flaky)
    recovers = _queue(owner, kind, {"fail_times": 1, "model_id": "mdl_aaaaaaaaaaaa"})
    never = _queue(owner, kind, {"fail_times": 9, "model_id": "mdl_aaaaaaaaaaaa"})
    pool = _pool(settings, kinds=(kind,)).start()
    try:
        _wait(lambda: all(_status(j.id) in jobs.FINAL_STATUSES for j in (recovers, never)))
    finally:
        pool.stop()
    recovers, never = Job.get_by_id(recovers.id), Job.get_by_id(never.id)
    assert (recovers.status, recovers.attempts, recovers.result) == ("succeeded", 2, {"attempt": 2})
    assert (never.status, never.attempts) == ("failed", 3)
    assert "disk full" in never.error["detail"]
    assert [e["type"] for e in events_since(never.id)].count("retry") == 2


def test_job_failed_is_final_at_once(settings: Settings, owner: str, test_kind: Any) -> None:
    def refuse(ctx: JobContext) -> dict[str, Any]:
        raise JobFailed(problem(422, "Unprocessable Content", "no", "test"))

    kind = test_kind(refuse)
    job = _queue(owner, kind, {"model_id": "mdl_aaaaaaaaaaaa"})
    pool = _pool(settings, kinds=(kind,)).start()
    try:
        _wait(lambda: _status(job.id) in jobs.FINAL_STATUSES)
    finally:
        pool.stop()
    job = Job.get_by_id(job.id)
    assert (job.status, job.attempts, job.error["detail"]) == ("failed", 1, "no")


def test_a_worker_that_lost_its_lease_stops_and_records_nothing(
        settings: Settings, owner: str, test_kind: Any) -> None:
    started = threading.Event()

    def patient(ctx: JobContext) -> dict[str, Any]:
        started.set()
        ctx.stop.wait(30)
        return {"finished_by": "the old holder"}

    kind = test_kind(patient)
    job = _queue(owner, kind, {"model_id": "mdl_aaaaaaaaaaaa"})
    pool = _pool(settings, kinds=(kind,), heartbeat_s=0.05).start()
    try:
        assert started.wait(10)
        Job.update(lease_owner="another-worker").where(Job.id == job.id).execute()
        _wait(lambda: pool.worker_stats()["busy"] == 0)
    finally:
        pool.stop()
    job = Job.get_by_id(job.id)
    assert (job.status, job.lease_owner, job.result) == ("running", "another-worker", None)


def test_stopping_the_pool_gives_running_jobs_back(settings: Settings, owner: str,
                                                   test_kind: Any) -> None:
    started = threading.Event()

    def patient(ctx: JobContext) -> dict[str, Any]:
        started.set()
        if not ctx.stop.wait(30):
            return {}
        from bitnet_sdk.service.jobs.kinds import JobCancelled
        raise JobCancelled()

    kind = test_kind(patient)
    job = _queue(owner, kind, {"model_id": "mdl_aaaaaaaaaaaa"})
    pool = _pool(settings, kinds=(kind,)).start()
    assert started.wait(10)
    pool.stop()
    job = Job.get_by_id(job.id)
    assert (job.status, job.attempts, job.max_attempts, job.lease_owner) == ("queued", 1, 4, None)
