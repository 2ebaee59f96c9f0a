"""The durable job queue on both databases: creation and idempotency, atomic claims, leases and
take-over, retries, cancellation, events, listing. Time is driven through ``now``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.service.jobs import queue as jobs
from bitnet_sdk.service.jobs.events import events_since, hub
from bitnet_sdk.service.jobs.queue import JobSpec
from bitnet_sdk.store import Job, User, WebhookDelivery, resolve
from bitnet_sdk.store.testing import DATABASE_KINDS, postgres_test_url, temporary_database

T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip("BITNET_TEST_POSTGRES_URL not set (start one with scripts/start-postgres.sh)")
    with temporary_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def alice(db: peewee.Database) -> str:
    return User.create(email="alice@example.com").id


@pytest.fixture
def bob(db: peewee.Database) -> str:
    return User.create(email="bob@example.com").id


def _spec(model_id: str = "mdl_aaaaaaaaaaaa", **kw: object) -> JobSpec:
    return JobSpec(params={"request": {"model_id": model_id}, "model_id": model_id}, **kw)  # type: ignore[arg-type]


def _create(owner: str, *, n: int = 1, key: str | None = None, body: object = None,
            operation: str = "quantizeModel", now: float = T0, **kw: object) -> tuple[list[Job], bool]:
    return jobs.create_jobs(owner, "quantize", [_spec() for _ in range(n)],
                            body_fingerprint=jobs.fingerprint(body or {"n": n}),
                            operation=operation, idempotency_key=key, now=now, **kw)  # type: ignore[arg-type]


# -- creation and idempotency -------------------------------------------------------------


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    assert jobs.fingerprint({"a": 1, "b": [1, 2]}) == jobs.fingerprint({"b": [1, 2], "a": 1})
    assert jobs.fingerprint({"a": 1}) != jobs.fingerprint({"a": 2})


def test_created_jobs_are_queued_and_visible_to_their_owner_only(alice: str, bob: str) -> None:
    (job,), created = _create(alice)
    assert created and job.status == "queued" and job.attempts == 0
    assert jobs.get_job(job.id, owner_id=alice).id == job.id
    assert jobs.get_job(job.id, owner_id=None).id == job.id  # an admin sees every job
    with pytest.raises(jobs.JobNotFound):
        jobs.get_job(job.id, owner_id=bob)
    with pytest.raises(jobs.JobNotFound):
        jobs.get_job(job.id, owner_id=alice, kind="inference_batch")


def test_same_key_and_body_replays_the_first_jobs(alice: str) -> None:
    first, created = _create(alice, n=3, key="k-1", body={"items": 3})
    again, created_again = _create(alice, n=3, key="k-1", body={"items": 3}, now=T0 + 60)
    assert created and not created_again
    assert [j.id for j in again] == [j.id for j in first]
    assert Job.select().count() == 3


def test_same_key_with_another_body_is_refused(alice: str) -> None:
    _create(alice, key="k-1", body={"qtype": "tq2_0"})
    with pytest.raises(jobs.IdempotencyMismatch):
        _create(alice, key="k-1", body={"qtype": "i2_s"})
    assert Job.select().count() == 1


def test_keys_are_scoped_to_owner_and_operation(alice: str, bob: str) -> None:
    (a,), _ = _create(alice, key="shared")
    (b,), created_b = _create(bob, key="shared")
    (c,), created_c = _create(alice, key="shared", operation="createQuantizeBatch")
    assert created_b and created_c and len({a.id, b.id, c.id}) == 3


def test_a_key_older_than_the_window_is_released_and_reused(alice: str) -> None:
    (old,), _ = _create(alice, key="k", body={"v": 1})
    later = T0 + jobs.IDEMPOTENCY_WINDOW_S + 1
    (new,), created = _create(alice, key="k", body={"v": 2}, now=later)
    assert created and new.id != old.id
    assert Job.get_by_id(old.id).idempotency_key is None


def test_replay_while_the_first_request_computes_is_in_progress(alice: str) -> None:
    (job,), _ = _create(alice, key="k", run_by="request:srv:1")
    assert job.status == "running" and job.attempts == 1
    with pytest.raises(jobs.IdempotencyInProgress):
        jobs.find_replay(alice, "quantize", "quantizeModel", "k", jobs.fingerprint({"n": 1}), 1,
                         now=T0 + 1)
    jobs.finish(job.id, "request:srv:1", "succeeded", result={"ok": True})
    replay = jobs.find_replay(alice, "quantize", "quantizeModel", "k", jobs.fingerprint({"n": 1}),
                              1, now=T0 + 2)
    assert replay is not None and replay.jobs[0].result == {"ok": True}


def test_concurrent_creations_with_one_key_make_one_job(alice: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            rows, _ = _create(alice, key="race", body={"same": True})
            results.append([j.id for j in rows])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            resolve().close()

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({tuple(r) for r in results}) == 1 and Job.select().count() == 1


# -- claiming and leases -------------------------------------------------------------------


def test_claims_take_the_oldest_runnable_job_once(alice: str) -> None:
    ids = [_create(alice, now=T0 + i)[0][0].id for i in range(3)]
    claimed = [jobs.claim_next(f"w{i}", kinds=["quantize"], now=T0 + 10) for i in range(3)]
    assert [j.id for j in claimed if j] == ids
    assert jobs.claim_next("w9", kinds=["quantize"], now=T0 + 10) is None
    job = Job.get_by_id(ids[0])
    assert (job.status, job.attempts, job.lease_owner) == ("running", 1, "w0")
    assert jobs.claim_next("w9", kinds=["inference_batch"], now=T0 + 10) is None


def test_concurrent_workers_never_claim_the_same_job(alice: str) -> None:
    total = 12
    for i in range(total):
        _create(alice, now=T0 + i)
    claimed: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        try:
            while (job := jobs.claim_next(name, kinds=["quantize"], now=T0 + 100)) is not None:
                with lock:
                    claimed.append(job.id)
        finally:
            resolve().close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == total and len(set(claimed)) == total


def test_an_expired_lease_is_taken_over_and_the_old_holder_is_locked_out(alice: str) -> None:
    (job,), _ = _create(alice)
    assert jobs.claim_next("w1", kinds=["quantize"], lease_s=10, now=T0) is not None
    assert not jobs.heartbeat(job.id, "w1", lease_s=10, now=T0 + 8)  # renewed until T0 + 18
    assert jobs.claim_next("w2", kinds=["quantize"], lease_s=10, now=T0 + 17) is None
    taken = jobs.claim_next("w2", kinds=["quantize"], lease_s=10, now=T0 + 19)
    assert taken is not None and taken.id == job.id
    assert (taken.attempts, taken.lease_owner) == (2, "w2")
    with pytest.raises(jobs.LeaseLost):
        jobs.heartbeat(job.id, "w1", now=T0 + 20)
    with pytest.raises(jobs.LeaseLost):
        jobs.set_progress(job.id, "w1", 0.5, now=T0 + 20)
    with pytest.raises(jobs.LeaseLost):
        jobs.finish(job.id, "w1", "succeeded", result={"by": "w1"}, now=T0 + 20)
    done = jobs.finish(job.id, "w2", "succeeded", result={"by": "w2"}, now=T0 + 21)
    assert (done.status, done.result, done.progress) == ("succeeded", {"by": "w2"}, 1.0)


def test_expired_jobs_out_of_attempts_fail_and_cancel_requests_are_honoured(alice: str) -> None:
    (tired,), _ = _create(alice, now=T0)
    (leaving,), _ = _create(alice, now=T0 + 1)
    Job.update(max_attempts=1).where(Job.id == tired.id).execute()
    jobs.claim_next("w1", kinds=["quantize"], lease_s=5, now=T0 + 2)
    jobs.claim_next("w1", kinds=["quantize"], lease_s=5, now=T0 + 2)
    jobs.request_cancel(leaving.id, owner_id=alice, kind="quantize", now=T0 + 3)
    assert jobs.claim_next("w2", kinds=["quantize"], lease_s=5, now=T0 + 10) is None
    tired, leaving = Job.get_by_id(tired.id), Job.get_by_id(leaving.id)
    assert tired.status == "failed" and tired.error["status"] == 500
    assert "worker-lost" in tired.error["type"]
    assert leaving.status == "cancelled" and leaving.finished_at is not None


def test_retry_waits_for_the_back_off_then_fails_when_attempts_run_out(alice: str) -> None:
    (job,), _ = _create(alice)
    Job.update(max_attempts=2).where(Job.id == job.id).execute()
    problem = {"type": "about:blank", "title": "Boom", "status": 500}
    jobs.claim_next("w1", kinds=["quantize"], now=T0)
    queued = jobs.retry_later(job.id, "w1", problem, 30, now=T0 + 1)
    assert queued.status == "queued" and queued.error is None
    assert jobs.claim_next("w1", kinds=["quantize"], now=T0 + 30) is None
    again = jobs.claim_next("w1", kinds=["quantize"], now=T0 + 32)
    assert again is not None and again.attempts == 2
    failed = jobs.retry_later(job.id, "w1", problem, 30, now=T0 + 33)
    assert (failed.status, failed.error) == ("failed", problem)


def test_release_gives_the_attempt_back(alice: str) -> None:
    (job,), _ = _create(alice)
    jobs.claim_next("w1", kinds=["quantize"], now=T0)
    released = jobs.release(job.id, "w1")
    assert (released.status, released.lease_owner, released.max_attempts) == ("queued", None, 4)
    assert jobs.claim_next("w2", kinds=["quantize"], now=T0 + 1).attempts == 2


# -- cancellation ----------------------------------------------------------------------------


def test_cancel_rules(alice: str, bob: str) -> None:
    (queued,), _ = _create(alice, now=T0)
    (running,), _ = _create(alice, now=T0 + 1)
    (done,), _ = _create(alice, now=T0 + 2)
    jobs.request_cancel(queued.id, owner_id=alice, kind="quantize")
    assert Job.get_by_id(queued.id).status == "cancelled"
    assert jobs.claim_next("w", kinds=["quantize"], now=T0 + 5).id == running.id
    assert jobs.claim_next("w2", kinds=["quantize"], now=T0 + 5).id == done.id
    jobs.finish(done.id, "w2", "succeeded", result={})
    after = jobs.request_cancel(running.id, owner_id=alice, kind="quantize")
    assert (after.status, after.cancel_requested) == ("running", True)
    assert jobs.heartbeat(running.id, "w") is True
    assert jobs.request_cancel(queued.id, owner_id=alice, kind="quantize").status == "cancelled"
    with pytest.raises(jobs.JobConflict):
        jobs.request_cancel(done.id, owner_id=alice, kind="quantize")
    with pytest.raises(jobs.JobNotFound):
        jobs.request_cancel(running.id, owner_id=bob, kind="quantize")


# -- events, listing, stats -----------------------------------------------------------------


def test_every_change_is_an_event_announced_after_commit(alice: str) -> None:
    seen: list[tuple[str, int, str]] = []
    unsubscribe = hub.subscribe(lambda job_id, e: seen.append((job_id, e["id"], e["type"])))
    try:
        (job,), _ = _create(alice)
        jobs.claim_next("w", kinds=["quantize"], now=T0 + 1)
        assert not jobs.set_progress(job.id, "w", 0.25, "step 1", now=T0 + 2)
        jobs.finish(job.id, "w", "succeeded", result={}, now=T0 + 3)
    finally:
        unsubscribe()
    events = events_since(job.id)
    assert [e["type"] for e in events] == ["queued", "started", "progress", "succeeded"]
    assert events[2]["data"] == {"status": "running", "progress": 0.25, "message": "step 1"}
    assert [(job.id, e["id"], e["type"]) for e in events] == seen
    assert [e["type"] for e in events_since(job.id, events[1]["id"])] == ["progress", "succeeded"]


def test_list_pages_newest_first_with_filters(alice: str, bob: str) -> None:
    made = [_create(alice, now=T0 + i)[0][0] for i in range(5)]
    _create(bob, now=T0 + 20)
    Job.update(params={"request": {}, "model_id": "mdl_bbbbbbbbbbbb"}).where(Job.id == made[1].id).execute()
    jobs.claim_next("w", kinds=["quantize"], now=T0 + 10)  # the oldest runs
    page1 = jobs.list_jobs(owner_id=alice, kind="quantize", limit=3)
    page2 = jobs.list_jobs(owner_id=alice, kind="quantize", limit=3, cursor=page1.next_cursor)
    assert [j.id for j in page1.items + page2.items] == [j.id for j in reversed(made)]
    assert page2.next_cursor is None
    running = jobs.list_jobs(owner_id=alice, kind="quantize", status="running")
    assert [j.id for j in running.items] == [made[0].id]
    by_model = jobs.list_jobs(owner_id=alice, kind="quantize", model_id="mdl_bbbbbbbbbbbb")
    assert [j.id for j in by_model.items] == [made[1].id]
    assert len(jobs.list_jobs(owner_id=None, kind="quantize").items) == 6


def test_queue_stats(alice: str) -> None:
    assert jobs.queue_stats() == {"depth": 0, "running": 0, "oldest_queued_at": None}
    for i in range(3):
        _create(alice, now=T0 + i)
    jobs.claim_next("w", kinds=["quantize"], now=T0 + 5)
    assert jobs.queue_stats() == {"depth": 2, "running": 1,
                                  "oldest_queued_at": "2024-01-01T00:00:01Z"}


def test_finishing_a_job_with_a_webhook_queues_its_delivery(alice: str) -> None:
    (job,), _ = jobs.create_jobs(
        alice, "quantize", [_spec(webhook_url="https://example.com/h", webhook_secret="whsec_x")],
        body_fingerprint="f", operation="quantizeModel", now=T0)
    jobs.claim_next("w", kinds=["quantize"], now=T0)
    jobs.finish(job.id, "w", "failed", error={"type": "about:blank", "title": "x", "status": 422},
                now=T0 + 1)
    (delivery,) = WebhookDelivery.select()
    assert (delivery.url, delivery.event, delivery.status) == ("https://example.com/h",
                                                               "job.failed", "pending")
    assert delivery.payload["type"] == "job.failed"
    assert delivery.payload["data"]["id"] == job.id
    assert delivery.payload["data"]["error"]["status"] == 422
    assert "webhook_secret" not in str(delivery.payload)
