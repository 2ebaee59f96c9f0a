"""Job progress events: stored as :class:`~bitnet_sdk.store.models.JobEvent` rows, announced in-process.

Every change of a job (queued, started, progress, retry, cancel requested, final state) appends
one ``JobEvent`` row in the same transaction as the change, so any process sharing the database
can replay a job's history with :func:`events_since`. Writers in *this* process also announce
each event on :data:`hub` after their transaction commits, so an in-process listener (the
WebSocket's ``progress`` messages) learns of it at once instead of polling the database.

Jobs run by ``bitnet worker`` processes are not announced here (another process); a listener
that must see them too polls :func:`events_since` at a slow pace, which
:func:`wait_for_events` does: it returns as soon as an announcement arrives, or after
``poll_s`` at the latest, with whatever the database holds.

Event ``data`` always carries ``status``, ``progress`` and ``message`` (the job as it was after
the change), plus type-specific fields (``attempt``, ``error`` …).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from bitnet_sdk.store.models import JobEvent

__all__ = ["EVENT_TYPES", "JobEventHub", "events_since", "hub", "wait_for_events"]

log = logging.getLogger(__name__)

#: Every ``JobEvent.type`` the jobs service writes.
EVENT_TYPES = ("queued", "started", "progress", "retry", "cancel_requested",
               "succeeded", "failed", "cancelled")

#: ``listener(job_id, event)``; ``event`` is the :func:`event_dict` of the new row.
Listener = Callable[[str, dict[str, Any]], None]


def event_dict(row: JobEvent) -> dict[str, Any]:
    """A stored event as plain data: ``id``, ``job_id``, ``type``, ``created_at``, ``data``."""
    return {"id": int(row.id), "job_id": row.job_id, "type": row.type,
            "created_at": row.created_at, "data": dict(row.data or {})}


def events_since(job_id: str, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
    """Events of ``job_id`` with ``id > after_id``, oldest first (at most ``limit``). Blocking."""
    rows = (JobEvent.select()
            .where(JobEvent.job == job_id, JobEvent.id > after_id)
            .order_by(JobEvent.id)
            .limit(limit))
    return [event_dict(row) for row in rows]


class JobEventHub:
    """Announces committed job events to in-process listeners (thread-safe).

    Listeners are called in the writer's thread, after its transaction committed; they must
    return quickly and never block (hand the event to an event loop with
    ``loop.call_soon_threadsafe``). A listener that raises is logged and kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add ``listener``; returns the function that removes it again."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, job_id: str, event: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(job_id, event)
            except Exception:
                log.exception("job event listener failed", extra={"job_id": job_id})


#: The process's hub (one per process: the store is one per process too).
hub = JobEventHub()


async def wait_for_events(job_id: str, after_id: int, *, timeout_s: float,
                          poll_s: float = 1.0) -> list[dict[str, Any]]:
    """Events of ``job_id`` after ``after_id``: at once if there are some, else the first to come.

    Waits at most ``timeout_s`` (returns ``[]`` then). Wakes on an in-process announcement and
    re-reads the database every ``poll_s`` for events written by other processes. The database
    reads run in a worker thread.
    """
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def listener(changed_job: str, _event: dict[str, Any]) -> None:
        if changed_job == job_id:
            loop.call_soon_threadsafe(changed.set)

    unsubscribe = hub.subscribe(listener)
    try:
        deadline = loop.time() + timeout_s
        while True:
            changed.clear()
            events = await asyncio.to_thread(events_since, job_id, after_id)
            remaining = deadline - loop.time()
            if events or remaining <= 0:
                return events
            try:
                await asyncio.wait_for(changed.wait(), min(poll_s, remaining))
            except asyncio.TimeoutError:  # not the builtin on Python 3.10
                pass
    finally:
        unsubscribe()
