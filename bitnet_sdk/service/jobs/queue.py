"""The durable job queue: jobs live in the database, workers lease them.

Life of a job (``Job.status``)::

    queued ──claim──▶ running ──finish──▶ succeeded | failed | cancelled
       ▲                 │
       └──retry_later────┘   (a failed attempt with attempts left, after a back-off)

* **Creation** (:func:`create_jobs`) stores the request in ``params`` and, with an
  ``Idempotency-Key``, a digest of (operation, key) in ``idempotency_key`` (unique per owner and
  kind) and a fingerprint of the body. Idempotency semantics (IETF draft
  ``httpapi-idempotency-key-header``): the same key and body within
  :data:`IDEMPOTENCY_WINDOW_S` return the jobs the first request created
  (:class:`Replay`); the same key with another body is :class:`IdempotencyMismatch` (422); the
  same key while the first request is still computing its answer (a synchronous quantization)
  is :class:`IdempotencyInProgress` (409). A key older than the window is released and reused.
* **Claiming** (:func:`claim_next`) is atomic: on SQLite inside
  :func:`~bitnet_sdk.store.write_transaction` (``BEGIN IMMEDIATE``: one writer at a time), on
  PostgreSQL with ``SELECT … FOR UPDATE SKIP LOCKED`` so workers never wait on each other. The
  claimer holds a *lease* (``lease_owner``, ``lease_expires_at``) that it renews
  (:func:`heartbeat`, :func:`set_progress`) while it works. A job whose lease expired — its
  worker died — is claimed again like a queued one (``attempts`` counts every start), unless it
  used up ``max_attempts`` (then it fails) or was asked to cancel (then it is cancelled).
* **Ending** (:func:`finish`) records the result or the error (an RFC 9457 problem dict), and
  queues the webhook delivery in the same transaction. Only the lease holder may end or update
  a running job (:class:`LeaseLost` otherwise), so a worker that lost its lease cannot overwrite
  the work of the one that took over.
* **Cancelling** (:func:`request_cancel`): a queued job is cancelled at once; a running one gets
  ``cancel_requested`` and its worker stops at its next checkpoint.
* **Quota**: a quantization job that ends failed, or cancelled before it started, gives its
  place in the owner's monthly quota back (:func:`bitnet_sdk.service.accounting.usage.release_quantize_job`),
  in the transaction that ends it.

Every change appends a :class:`~bitnet_sdk.store.models.JobEvent` (see
:mod:`bitnet_sdk.service.jobs.events`). All functions block (database): call them from threads.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import peewee

from bitnet_sdk.service import log_context
from bitnet_sdk.service.accounting import usage
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.service.jobs import webhooks
from bitnet_sdk.service.jobs.events import event_dict, hub
from bitnet_sdk.service.jobs.views import utc_iso
from bitnet_sdk.service.pagination import DEFAULT_LIMIT, Page, paginate
from bitnet_sdk.store import Job, JobEvent, is_postgres, write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.ids import new_id

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_LEASE_S",
    "DEFAULT_MAX_ATTEMPTS",
    "FINAL_STATUSES",
    "IDEMPOTENCY_WINDOW_S",
    "REQUEST_OWNER_PREFIX",
    "IdempotencyInProgress",
    "IdempotencyMismatch",
    "JobConflict",
    "JobError",
    "JobNotFound",
    "JobSpec",
    "LeaseLost",
    "Replay",
    "claim_next",
    "create_jobs",
    "find_replay",
    "fingerprint",
    "finish",
    "get_job",
    "heartbeat",
    "list_jobs",
    "queue_stats",
    "release",
    "request_cancel",
    "retry_later",
    "set_progress",
]

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0
DEFAULT_MAX_ATTEMPTS = 3
IDEMPOTENCY_WINDOW_S = 24 * 3600
ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
#: Lease owners of jobs computed inside the request that created them (synchronous mode).
REQUEST_OWNER_PREFIX = "request:"


class JobError(Exception):
    """Base of the queue's refusals; the message is fit to show the caller."""


class JobNotFound(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id!r} does not exist.")
        self.job_id = job_id


class JobConflict(JobError):
    """The job's state does not allow the change (cancelling a finished job)."""


class IdempotencyMismatch(JobError):
    """The Idempotency-Key was used with another request body (422)."""


class IdempotencyInProgress(JobError):
    """The first request with this Idempotency-Key has not answered yet (409)."""


class LeaseLost(JobError):
    """The caller no longer holds the job's lease: another worker took it over, or it ended."""


@dataclass(frozen=True)
class JobSpec:
    """One job to create: its stored ``params`` (must name ``model_id``) and webhook."""

    params: dict[str, Any]
    webhook_url: str | None = None
    webhook_secret: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@dataclass(frozen=True)
class Replay:
    """Jobs an earlier request with the same Idempotency-Key created (in request order)."""

    jobs: list[Job] = field(default_factory=list)


# -- helpers ---------------------------------------------------------------------------


def fingerprint(body: Any) -> str:
    """SHA-256 of the canonical JSON of a request body: equal bodies, equal fingerprints."""
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


def _key_digests(operation: str, key: str, count: int) -> list[str]:
    """Stored keys: a digest of (operation, client key), one per job of the request.

    Digests keep client strings (up to 255 characters) out of the 200-character column and
    scope keys to the operation, so the same key sent to two operations names two requests.
    """
    digest = hashlib.sha256(f"{operation}\0{key}".encode()).hexdigest()
    return [f"{digest}/{i}" for i in range(count)]


def _skip_locked(query: peewee.ModelSelect) -> peewee.ModelSelect:
    """Rows locked for this transaction, skipping rows others hold (PostgreSQL): claimers
    never queue behind each other. SQLite's write transaction already excludes every other
    writer."""
    return query.for_update("FOR UPDATE SKIP LOCKED") if is_postgres() else query


def _locked(query: peewee.ModelSelect) -> peewee.ModelSelect:
    """Rows locked for this transaction, waiting for other holders (PostgreSQL)."""
    return query.for_update() if is_postgres() else query


def _event(job: Job, type_: str, **extra: Any) -> JobEvent:
    data = {"status": job.status, "progress": float(job.progress or 0.0), **extra}
    data.setdefault("message", None)
    return JobEvent.create(job=job.id, type=type_, data=data)


@contextmanager
def _writing() -> Iterator[list[JobEvent]]:
    """A write transaction whose events are announced on the hub once it has committed."""
    events: list[JobEvent] = []
    with write_transaction():
        yield events
    for row in events:
        hub.publish(row.job_id, event_dict(row))


# -- creating --------------------------------------------------------------------------


def find_replay(owner_id: str, kind: str, operation: str, key: str, body_fingerprint: str,
                count: int, now: float | None = None) -> Replay | None:
    """The jobs of an earlier request with this key, or None (also when the key expired).

    Raises :class:`IdempotencyMismatch` or :class:`IdempotencyInProgress` as the module
    docstring says.
    """
    keys = _key_digests(operation, key, count)
    rows = list(Job.select().where(Job.owner == owner_id, Job.kind == kind,
                                   Job.idempotency_key.in_(keys)))
    if not rows:
        return None
    rows.sort(key=lambda j: keys.index(j.idempotency_key))
    first = rows[0]
    if first.created_at < utcnow(now) - timedelta(seconds=IDEMPOTENCY_WINDOW_S):
        return None
    if (first.params or {}).get("request_sha256") != body_fingerprint or len(rows) != count:
        raise IdempotencyMismatch(
            "This Idempotency-Key was already used with a different request body.")
    if any(j.status == "running" and str(j.lease_owner or "").startswith(REQUEST_OWNER_PREFIX)
           for j in rows):
        raise IdempotencyInProgress(
            "The first request with this Idempotency-Key is still being processed.")
    return Replay(rows)


def create_jobs(
    owner_id: str,
    kind: str,
    specs: Sequence[JobSpec],
    *,
    body_fingerprint: str,
    operation: str,
    idempotency_key: str | None = None,
    run_by: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    now: float | None = None,
) -> tuple[list[Job], bool]:
    """Queue one job per spec, all or nothing; returns ``(jobs, created)``.

    With ``idempotency_key``, an earlier request's jobs are returned instead
    (``created`` False; see :func:`find_replay`). ``run_by`` creates the (single) job
    already ``running`` under that lease owner: the synchronous path, where the request
    computes the job itself. Call inside the caller's own write transaction to create jobs
    atomically with other checks (model locks).
    """
    try:
        return _create(owner_id, kind, specs, body_fingerprint, operation, idempotency_key,
                       run_by, lease_s, now)
    except peewee.IntegrityError:
        # A concurrent request with the same key won the unique index: answer as a replay.
        if idempotency_key is None:
            raise
        replay = find_replay(owner_id, kind, operation, idempotency_key, body_fingerprint,
                             len(specs), now)
        if replay is None:
            raise
        return replay.jobs, False


def _create(owner_id: str, kind: str, specs: Sequence[JobSpec], body_fingerprint: str,
            operation: str, idempotency_key: str | None, run_by: str | None, lease_s: float,
            now: float | None) -> tuple[list[Job], bool]:
    if run_by is not None and len(specs) != 1:
        raise ValueError("run_by creates exactly one job")
    at = utcnow(now)
    keys: list[str | None] = [None] * len(specs)
    with _writing() as events:
        if idempotency_key is not None:
            replay = find_replay(owner_id, kind, operation, idempotency_key, body_fingerprint,
                                 len(specs), now)
            if replay is not None:
                return replay.jobs, False
            keys = list(_key_digests(operation, idempotency_key, len(specs)))
            # An expired request's key is released so this one can take it (only an expired
            # one: a concurrent request's fresh key must make this insert fail instead).
            Job.update(idempotency_key=None).where(
                Job.owner == owner_id, Job.kind == kind,
                Job.idempotency_key.in_([k for k in keys if k]),
                Job.created_at < at - timedelta(seconds=IDEMPOTENCY_WINDOW_S)).execute()
        jobs = []
        for spec, key in zip(specs, keys, strict=True):
            params = {**spec.params, "request_sha256": body_fingerprint}
            request_id = log_context.current().get("request_id")
            if request_id:  # the creating request's id, for the job's and webhook's log lines
                params["request_id"] = request_id
            if spec.webhook_secret:
                params["webhook_secret"] = spec.webhook_secret
            job = Job(id=new_id("job"), owner=owner_id, kind=kind, params=params,
                      idempotency_key=key, webhook_url=spec.webhook_url,
                      max_attempts=spec.max_attempts, created_at=at)
            if run_by is not None:
                job.status, job.attempts, job.started_at = "running", 1, at
                job.lease_owner, job.heartbeat_at = run_by, at
                job.lease_expires_at = at + timedelta(seconds=lease_s)
            job.save(force_insert=True)
            events.append(_event(job, "queued", message="queued"))
            if run_by is not None:
                events.append(_event(job, "started", attempt=1, message="started"))
            jobs.append(job)
    return jobs, True


# -- reading ---------------------------------------------------------------------------


def _owned(owner_id: str | None) -> Any:
    return peewee.SQL("1 = 1") if owner_id is None else Job.owner == owner_id


def get_job(job_id: str, *, owner_id: str | None, kind: str | None = None) -> Job:
    """The job if it exists for this caller (``owner_id`` None: an admin sees every job)."""
    query = Job.select().where(Job.id == job_id, _owned(owner_id))
    if kind is not None:
        query = query.where(Job.kind == kind)
    job = query.first()
    if job is None:
        raise JobNotFound(job_id)
    return job


def list_jobs(*, owner_id: str | None, kind: str, cursor: str | None = None,
              limit: int = DEFAULT_LIMIT, status: str | None = None,
              model_id: str | None = None) -> Page[Job]:
    """One page of jobs, newest first (``owner_id`` None: everyone's, for admins)."""
    query = Job.select().where(_owned(owner_id), Job.kind == kind)
    if status is not None:
        query = query.where(Job.status == status)
    if model_id is not None:
        # params is JSON text with sorted keys and compact separators (JSONField).
        query = query.where(Job.params.contains(f'"model_id":"{model_id}"'))
    return paginate(query, Job, cursor=cursor, limit=limit)


def queue_stats() -> dict[str, Any]:
    """``{depth, running, oldest_queued_at}`` over every kind (``/status``)."""
    depth = Job.select().where(Job.status == "queued").count()
    running = Job.select().where(Job.status == "running").count()
    oldest = Job.select(peewee.fn.MIN(Job.created_at)).where(Job.status == "queued").scalar()
    if isinstance(oldest, str):  # SQLite returns aggregate timestamps as stored text
        oldest = Job.created_at.python_value(oldest)
    return {"depth": depth, "running": running, "oldest_queued_at": utc_iso(oldest)}


# -- working ---------------------------------------------------------------------------


def claim_next(worker_id: str, *, kinds: Sequence[str], lease_s: float = DEFAULT_LEASE_S,
               now: float | None = None) -> Job | None:
    """Lease the oldest runnable job of ``kinds`` for ``worker_id``, or None.

    Runnable: queued and past its back-off, or running with an expired lease (its worker
    died). Expired jobs that asked to cancel or used up their attempts are ended on the way.
    """
    for _ in range(16):  # ends expired jobs it cannot run, then looks again
        at = utcnow(now)
        with _writing() as events:
            runnable = (
                ((Job.status == "queued") & (Job.not_before.is_null() | (Job.not_before <= at)))
                | ((Job.status == "running") & (Job.lease_expires_at < at))
            )
            job = _skip_locked(Job.select().where(runnable, Job.kind.in_(list(kinds)))
                          .order_by(Job.created_at, Job.id).limit(1)).first()
            if job is None:
                return None
            if job.status == "running":  # taken over from a dead worker
                log.warning("job %s: lease of %s expired", job.id, job.lease_owner,
                            extra={"job_id": job.id})
                if job.cancel_requested:
                    events.append(_finalize(job, "cancelled", at))
                    continue
                if job.attempts >= job.max_attempts:
                    problem = ApiError(500, "Job Failed", f"The job's worker stopped responding "
                                       f"{job.attempts} times; giving up.",
                                       slug="worker-lost").problem()
                    events.append(_finalize(job, "failed", at, error=problem))
                    continue
            job.status, job.attempts, job.progress = "running", job.attempts + 1, 0.0
            job.lease_owner, job.heartbeat_at, job.not_before = worker_id, at, None
            job.lease_expires_at = at + timedelta(seconds=lease_s)
            job.started_at = job.started_at or at
            job.save()
            events.append(_event(job, "started", attempt=job.attempts, worker=worker_id,
                                 message=f"started (attempt {job.attempts})"))
            return job
    return None


def _held(job_id: str, worker_id: str) -> Job:
    """The running job under ``worker_id``'s lease, row-locked (inside a transaction)."""
    job = _locked(Job.select().where(Job.id == job_id)).first()
    if job is None or job.status != "running" or job.lease_owner != worker_id:
        raise LeaseLost(f"job {job_id} is no longer leased to {worker_id}")
    return job


def heartbeat(job_id: str, worker_id: str, *, lease_s: float = DEFAULT_LEASE_S,
              now: float | None = None) -> bool:
    """Renew the lease; returns ``cancel_requested``. :class:`LeaseLost` if not held."""
    at = utcnow(now)
    renewed = (Job.update(lease_expires_at=at + timedelta(seconds=lease_s), heartbeat_at=at)
               .where(Job.id == job_id, Job.lease_owner == worker_id, Job.status == "running")
               .execute())
    if not renewed:
        raise LeaseLost(f"job {job_id} is no longer leased to {worker_id}")
    return bool(Job.select(Job.cancel_requested).where(Job.id == job_id).scalar())


def set_progress(job_id: str, worker_id: str, progress: float, message: str | None = None, *,
                 lease_s: float = DEFAULT_LEASE_S, now: float | None = None) -> bool:
    """Record progress (0…1) and renew the lease; returns ``cancel_requested``."""
    at = utcnow(now)
    with _writing() as events:
        job = _held(job_id, worker_id)
        job.progress = min(1.0, max(0.0, float(progress)))
        job.heartbeat_at, job.lease_expires_at = at, at + timedelta(seconds=lease_s)
        job.save()
        events.append(_event(job, "progress", message=message))
        return bool(job.cancel_requested)


def finish(job_id: str, worker_id: str, status: str, *, result: dict[str, Any] | None = None,
           error: dict[str, Any] | None = None, now: float | None = None) -> Job:
    """End the leased job as ``succeeded``, ``failed`` or ``cancelled``."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"not a final status: {status!r}")
    with _writing() as events:
        job = _held(job_id, worker_id)
        events.append(_finalize(job, status, utcnow(now), result=result, error=error))
        return job


def retry_later(job_id: str, worker_id: str, error: dict[str, Any], delay_s: float, *,
                now: float | None = None) -> Job:
    """Give a failed attempt back to the queue after ``delay_s``, or fail the job when it has
    no attempts left (``error`` becomes its problem)."""
    at = utcnow(now)
    with _writing() as events:
        job = _held(job_id, worker_id)
        if job.attempts >= job.max_attempts or job.cancel_requested:
            status = "cancelled" if job.cancel_requested else "failed"
            events.append(_finalize(job, status, at, error=error if status == "failed" else None))
            return job
        job.status, job.lease_owner, job.lease_expires_at = "queued", None, None
        job.not_before = at + timedelta(seconds=delay_s)
        job.save()
        events.append(_event(job, "retry", attempt=job.attempts, error=error,
                             message=f"attempt {job.attempts} failed; retrying in {delay_s:g} s"))
        return job


def release(job_id: str, worker_id: str) -> Job:
    """Give an interrupted job (its worker is stopping) back to the queue at once.

    The interrupted attempt is not held against the job: ``max_attempts`` grows by one.
    """
    with _writing() as events:
        job = _held(job_id, worker_id)
        job.status, job.lease_owner, job.lease_expires_at = "queued", None, None
        job.max_attempts += 1
        job.save()
        events.append(_event(job, "retry", attempt=job.attempts,
                             message="interrupted: its worker stopped; queued again"))
        return job


def request_cancel(job_id: str, *, owner_id: str | None, kind: str,
                   now: float | None = None) -> Job:
    """Cancel: a queued job at once, a running one at its next checkpoint.

    Cancelling a cancelled job changes nothing; a succeeded or failed one is
    :class:`JobConflict`.
    """
    with _writing() as events:
        job = _locked(Job.select().where(Job.id == job_id, _owned(owner_id), Job.kind == kind)).first()
        if job is None:
            raise JobNotFound(job_id)
        if job.status in ("succeeded", "failed"):
            raise JobConflict(f"Job {job_id} already {job.status}; it cannot be cancelled.")
        if job.status == "queued":
            events.append(_finalize(job, "cancelled", utcnow(now)))
        elif job.status == "running" and not job.cancel_requested:
            job.cancel_requested = True
            job.save()
            events.append(_event(job, "cancel_requested", message="cancelling"))
        return job


def _finalize(job: Job, status: str, at: Any, *, result: dict[str, Any] | None = None,
              error: dict[str, Any] | None = None) -> JobEvent:
    """Put ``job`` in a final state, record its event and queue its webhook (in a transaction)."""
    job.status, job.finished_at = status, at
    job.lease_owner = job.lease_expires_at = job.not_before = None
    if status == "succeeded":
        job.progress = 1.0
    if result is not None:
        job.result = result
    job.error = error
    job.save()
    _release_quota(job)
    row = _event(job, status, message=status, error=error)
    if job.webhook_url:
        webhooks.enqueue(job, f"job.{status}", at)
    log.info("job %s %s", job.id, status, extra={"job_id": job.id, "status": status})
    return row


def _release_quota(job: Job) -> None:
    """A quantization job that failed, or was cancelled before it started, no longer counts
    against its owner's monthly quota (see :mod:`bitnet_sdk.service.accounting.usage`)."""
    if job.kind != "quantize":
        return
    if job.status == "failed":
        code = (job.error or {}).get("status")
        usage.release_quantize_job(job.id, code if isinstance(code, int) and code >= 400 else 500)
    elif job.status == "cancelled" and job.started_at is None:
        usage.release_quantize_job(job.id, 409)

