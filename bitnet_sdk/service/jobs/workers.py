"""Job workers: threads that claim jobs from the database queue and run them.

One :class:`WorkerPool` runs inside every server (``Settings.workers`` threads, registered as
``ctx.jobs``) and inside every ``bitnet worker`` process; they all share the queue
through the database (:mod:`bitnet_sdk.service.jobs.queue`), so jobs run wherever a thread is free.

* Each worker thread loops: claim the oldest runnable job with a lease, run it
  (:mod:`bitnet_sdk.service.jobs.kinds`), record the outcome. It wakes at once when a job is
  queued in this process (through :data:`~bitnet_sdk.service.jobs.events.hub`), or in any
  process when Redis is configured (:mod:`~bitnet_sdk.service.jobs.relay`), and polls every
  ``poll_s`` for jobs queued elsewhere or due after a back-off.
* A heartbeat thread renews the lease of every job running here every ``heartbeat_s``
  (``lease_s / 3`` by default) and passes on cancellation requests (so do progress writes;
  with Redis, a ``cancel_requested`` event from any process stops the job at once). A worker that dies stops
  heartbeating; after ``lease_s`` another worker takes the job over (``attempts`` + 1).
* Progress is written at most every ``progress_interval_s`` (and always on the last step).
* :meth:`WorkerPool.execute` runs a job in the calling thread with the same lease, heartbeat
  and bookkeeping; :meth:`WorkerPool.submit` runs it on the pool's own small executor
  (``sync_slots`` threads), which is what the synchronous quantization path awaits inside the
  request, so long computations never occupy the event loop's default executor.
* :meth:`WorkerPool.stop` asks running jobs to stop at their next checkpoint and gives them
  back to the queue (an interrupted attempt is not held against the job's ``max_attempts``).

Knobs not in :class:`~bitnet_sdk.config.Settings` come from the environment
(:meth:`WorkerOptions.from_env`): ``BITNET_JOB_LEASE_S`` (30), ``BITNET_JOB_POLL_S`` (1),
``BITNET_JOB_RETRY_BASE_S`` (5: back-off 5, 10, 20 … s, capped at 300) and
``BITNET_JOB_STEP_DELAY_S`` (0: a pause at every progress checkpoint, to watch or test slow
jobs; real work still runs).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from bitnet_sdk.config import Settings
from bitnet_sdk.service import log_context
from bitnet_sdk.service.jobs import queue as jobs
from bitnet_sdk.service.jobs.events import hub

if TYPE_CHECKING:
    from bitnet_sdk.service.jobs.relay import RedisEventRelay
from bitnet_sdk.service.jobs.kinds import RUNNERS, JobCancelled, JobContext, JobFailed, problem
from bitnet_sdk.service.jobs.webhooks import WebhookDispatcher
from bitnet_sdk.service.telemetry import NO_TELEMETRY, Telemetry, report
from bitnet_sdk.store import Job, resolve

__all__ = ["WorkerOptions", "WorkerPool", "start_job_services"]

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 300.0
_FINAL_EVENTS = frozenset({"succeeded", "failed", "cancelled"})
_WAKE_EVENTS = frozenset({"queued", "retry"})
#: WorkerOptions fields read from the environment.
_ENV_VARS = {"lease_s": "BITNET_JOB_LEASE_S", "poll_s": "BITNET_JOB_POLL_S",
             "retry_base_s": "BITNET_JOB_RETRY_BASE_S", "step_delay_s": "BITNET_JOB_STEP_DELAY_S"}


@dataclass(frozen=True)
class WorkerOptions:
    """How a pool works; see the module docstring for the environment variables."""

    concurrency: int = 1
    lease_s: float = jobs.DEFAULT_LEASE_S
    #: Lease renewal period (default ``lease_s / 3``).
    heartbeat_s: float | None = None
    poll_s: float = 1.0
    retry_base_s: float = 5.0
    progress_interval_s: float = 0.25
    step_delay_s: float = 0.0
    #: Jobs computed at once for requests that wait for them (synchronous quantization).
    sync_slots: int = 2
    kinds: tuple[str, ...] = tuple(RUNNERS)

    @classmethod
    def from_env(cls, **overrides: Any) -> WorkerOptions:
        """Defaults, then ``BITNET_JOB_*`` variables, then ``overrides`` that are not None."""
        values: dict[str, Any] = {}
        for name, var in _ENV_VARS.items():
            raw = os.environ.get(var)
            if raw:
                values[name] = float(raw)
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None and k in known})
        return cls(**values)

    @property
    def heartbeat_period_s(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else self.lease_s / 3


class _Running:
    """A job executing in this process."""

    def __init__(self, job: Job, worker_id: str) -> None:
        self.job_id, self.worker_id = job.id, worker_id
        self.stop = threading.Event()
        self.lost = threading.Event()
        self.interrupted = threading.Event()
        self.last_write = 0.0


class WorkerPool:
    """Worker threads, a heartbeat thread and a webhook dispatcher; see the module docstring."""

    def __init__(self, settings: Settings, options: WorkerOptions | None = None, *,
                 inference: Any = None, webhooks: WebhookDispatcher | None = None,
                 telemetry: Telemetry = NO_TELEMETRY) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.options = options or WorkerOptions.from_env(concurrency=settings.workers)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.webhooks = webhooks or WebhookDispatcher(allow_private=settings.webhook_allow_private)
        self._inference = inference
        self._owns_inference = False
        self._inference_lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._relay: RedisEventRelay | None = None
        self._sync = ThreadPoolExecutor(max_workers=max(1, self.options.sync_slots),
                                        thread_name_prefix="bitnet-sync-job")

    # -- life ----------------------------------------------------------------------------

    def start(self) -> WorkerPool:
        """Start the worker threads (``options.concurrency``, may be 0), heartbeat, webhooks."""
        self._unsubscribe = hub.subscribe(self._on_event)
        if self.settings.redis_url:  # events of other processes wake us at once, too
            from bitnet_sdk.service.jobs.relay import RedisEventRelay

            self._relay = RedisEventRelay(self.settings.redis_url, hub).start()
        targets: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = [
            (f"bitnet-job-worker-{i}", self._work, (f"{self.name}/{i}",))
            for i in range(self.options.concurrency)]
        targets.append(("bitnet-job-heartbeat", self._heartbeats, ()))
        for name, target, args in targets:
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.webhooks.start()
        log.info("job workers started: %d threads (%s)", self.options.concurrency, self.name)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt running jobs (given back to the queue), join the threads."""
        self._stopping.set()
        with self._lock:
            for running in self._running.values():
                running.interrupted.set()
                running.stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self._threads.clear()
        self._sync.shutdown(wait=True)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        self.webhooks.stop()
        if self._owns_inference and self._inference is not None:
            self._inference.cache.stop()

    def wake(self) -> None:
        """Look for runnable jobs now rather than at the next poll."""
        with self._wake:
            self._wake.notify_all()

    def _on_event(self, job_id: str, event: dict[str, Any]) -> None:
        if event["type"] in _WAKE_EVENTS:
            self.wake()
        elif event["type"] in _FINAL_EVENTS:
            self.webhooks.wake()
        elif event["type"] == "cancel_requested":
            # A cancel written by any process (relayed by Redis when configured) stops the
            # job here at once, not at its next progress write or heartbeat.
            with self._lock:
                item = self._running.get(job_id)
            if item is not None:
                item.stop.set()

    # -- stats -----------------------------------------------------------------------------

    def queue_stats(self) -> dict[str, Any]:
        """``{depth, running, oldest_queued_at}`` of the shared queue. Blocking."""
        return jobs.queue_stats()

    def worker_stats(self) -> dict[str, int]:
        """``{count, busy}``: this process's worker threads and the jobs running here."""
        with self._lock:
            busy = len(self._running)
        alive = sum(1 for t in self._threads if t.is_alive() and "worker" in t.name)
        return {"count": alive, "busy": busy}

    # -- the loops -------------------------------------------------------------------------

    def _work(self, worker_id: str) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    job = jobs.claim_next(worker_id, kinds=self.options.kinds,
                                          lease_s=self.options.lease_s)
                except Exception:
                    log.exception("could not claim a job")
                    job = None
                if job is not None:
                    self.execute(job, worker_id)
                    continue
                with self._wake:
                    if not self._stopping.is_set():
                        self._wake.wait(self.options.poll_s)
        finally:
            resolve().close()  # this thread's database connection

    def _heartbeats(self) -> None:
        try:
            while not self._stopping.wait(self.options.heartbeat_period_s):
                with self._lock:
                    running = list(self._running.values())
                for item in running:
                    self._heartbeat(item)
        finally:
            resolve().close()

    def _heartbeat(self, item: _Running) -> None:
        try:
            if jobs.heartbeat(item.job_id, item.worker_id, lease_s=self.options.lease_s):
                item.stop.set()
        except jobs.LeaseLost:
            log.warning("job %s: lease lost; stopping it here", item.job_id,
                        extra={"job_id": item.job_id})
            item.lost.set()
            item.stop.set()
        except Exception:  # a database hiccup: the next beat (lease_s / 3 later) may succeed
            log.exception("job %s: heartbeat failed", item.job_id)

    # -- running one job -------------------------------------------------------------------

    def submit(self, job: Job, worker_id: str) -> Future[Job | None]:
        """:meth:`execute` on the pool's executor for requests that wait for a job."""
        return self._sync.submit(self._execute_closing, job, worker_id)

    def _execute_closing(self, job: Job, worker_id: str) -> Job | None:
        try:
            return self.execute(job, worker_id)
        finally:
            resolve().close()  # the executor thread's database connection

    def execute(self, job: Job, worker_id: str) -> Job | None:
        """Run the job leased to ``worker_id`` in this thread and record how it ended.

        Returns the job's row after the outcome was recorded, or None when this worker lost
        the lease (someone else owns the outcome) or the pool is stopping.
        """
        item = _Running(job, worker_id)
        with self._lock:
            self._running[job.id] = item
            if self._stopping.is_set():  # too late to start: back to the queue at once
                item.interrupted.set()
                item.stop.set()
        ctx = JobContext(job_id=job.id, owner_id=job.owner_id, params=dict(job.params or {}),
                         attempt=job.attempts, settings=self.settings,
                         report=lambda f, m: self._report(item, f, m),
                         inference=self._inference_service, stop=item.stop,
                         step_delay_s=self.options.step_delay_s)
        with log_context.bound(request_id=(job.params or {}).get("request_id"), job_id=job.id):
            try:
                outcome = self._run(job, ctx)
            finally:
                with self._lock:
                    self._running.pop(job.id, None)
            return self._record(item, job, outcome)

    def _run(self, job: Job, ctx: JobContext) -> tuple[str, dict[str, Any] | None]:
        runner = RUNNERS.get(job.kind)
        if runner is None:
            return "failed", problem(500, "Internal Server Error",
                                     f"No runner for job kind {job.kind!r}.", "internal")
        try:
            return "succeeded", runner(ctx)
        except JobCancelled as exc:
            return "cancelled", exc.result
        except JobFailed as exc:
            return "failed", exc.problem
        except Exception as exc:
            log.exception("job %s: attempt %d failed", job.id, job.attempts,
                          extra={"job_id": job.id})
            return "retry", problem(500, "Internal Server Error",
                                    f"The job failed: {type(exc).__name__}: {exc}", "job-error")

    def _record(self, item: _Running, job: Job, outcome: tuple[str, dict[str, Any] | None]) -> Job | None:
        status, data = outcome
        if item.lost.is_set():
            return None
        try:
            if item.interrupted.is_set() and status in ("cancelled", "retry"):
                return jobs.release(job.id, item.worker_id)
            if status in ("succeeded", "cancelled", "failed"):
                row = (jobs.finish(job.id, item.worker_id, status, error=data) if status == "failed"
                       else jobs.finish(job.id, item.worker_id, status, result=data))
                report(self.telemetry, "job_finished", job.kind, status)
                return row
            delay = min(_MAX_BACKOFF_S, self.options.retry_base_s * 2 ** max(0, job.attempts - 1))
            assert data is not None
            return jobs.retry_later(job.id, item.worker_id, data, delay)
        except jobs.LeaseLost:
            log.warning("job %s: lease lost before its outcome (%s) was recorded", job.id, status)
            return None

    def _report(self, item: _Running, fraction: float, message: str | None) -> bool:
        """Write progress (rate-limited); returns whether the job was asked to cancel."""
        now = time.monotonic()
        if fraction < 1.0 and now - item.last_write < self.options.progress_interval_s:
            return item.stop.is_set()
        item.last_write = now
        try:
            if jobs.set_progress(item.job_id, item.worker_id, fraction, message,
                                 lease_s=self.options.lease_s):
                item.stop.set()
        except jobs.LeaseLost:
            item.lost.set()
            item.stop.set()
        return item.stop.is_set()

    def _inference_service(self) -> Any:
        with self._inference_lock:
            if self._inference is None:
                from bitnet_sdk.service.inference.model_cache import ModelCache
                from bitnet_sdk.service.inference.service import InferenceService

                self._inference = InferenceService(self.settings,
                                                   ModelCache.from_settings(self.settings))
                self._owns_inference = True
            return self._inference


def start_job_services(settings: Settings, *, inference: Any = None,
                       options: WorkerOptions | None = None,
                       telemetry: Telemetry = NO_TELEMETRY) -> WorkerPool:
    """A started pool for a server (``Settings.workers`` threads) or a worker process."""
    opts = options or WorkerOptions.from_env(concurrency=settings.workers)
    return WorkerPool(settings, opts, inference=inference, telemetry=telemetry).start()
