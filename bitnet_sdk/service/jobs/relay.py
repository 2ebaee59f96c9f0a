"""Job events fanned out to every process through Redis pub/sub (when ``redis_url`` is set).

Without Redis a process learns of events written elsewhere (another server process, a
``bitnet worker``) only by polling the database (:func:`~bitnet_sdk.service.jobs.events.wait_for_events`,
the workers' ``poll_s``). A :class:`RedisEventRelay` forwards every event announced on this
process's :data:`~bitnet_sdk.service.jobs.events.hub` to one Redis channel, and announces on
the hub the events other processes forwarded, so queued jobs wake idle workers and progress
reaches WebSocket watchers at once, wherever they were written. The database stays the
record: a relayed event only says "look now" (its ``created_at`` arrives as an ISO string),
and polling remains as the fallback if Redis is briefly unreachable.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bitnet_sdk.service.jobs.events import JobEventHub

__all__ = ["CHANNEL", "RedisEventRelay"]

log = logging.getLogger(__name__)

CHANNEL = "bitnet:job-events"

#: Set while this thread announces a relayed event, so it is not forwarded back.
_relaying = threading.local()


class RedisEventRelay:
    """Connects ``hub`` to the Redis at ``url``: local events out, other processes' events in."""

    def __init__(self, url: str, hub: JobEventHub, channel: str = CHANNEL) -> None:
        import redis

        self.url, self.hub, self.channel = url, hub, channel
        self.origin = uuid.uuid4().hex
        self.client = redis.Redis.from_url(url)
        self._pubsub: Any = None
        self._thread: Any = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> RedisEventRelay:
        """Subscribe (before returning, so no later event is missed) and start forwarding."""
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(**{self.channel: self._receive})
        self._thread = self._pubsub.run_in_thread(sleep_time=1.0, daemon=True,
                                                  exception_handler=_log_and_continue)
        self._unsubscribe = self.hub.subscribe(self._forward)
        return self

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._thread.stop()
            self._thread.join(5.0)
            self._thread = None
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
        self.client.close()

    def _forward(self, job_id: str, event: dict[str, Any]) -> None:
        if getattr(_relaying, "active", False):
            return
        message = json.dumps({"origin": self.origin, "job_id": job_id, "event": event},
                             default=_iso)
        try:
            self.client.publish(self.channel, message)
        except Exception:  # the database still has the event; pollers will see it
            log.warning("could not relay a job event to Redis", exc_info=True,
                        extra={"job_id": job_id})

    def _receive(self, message: dict[str, Any]) -> None:
        try:
            body = json.loads(message["data"])
            if body["origin"] == self.origin:
                return
            job_id, event = str(body["job_id"]), dict(body["event"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed job event on %s", self.channel)
            return
        _relaying.active = True
        try:
            self.hub.publish(job_id, event)
        finally:
            _relaying.active = False


def _iso(value: Any) -> str:
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


def _log_and_continue(error: BaseException, pubsub: Any, thread: Any) -> None:
    log.warning("Redis job-event subscription failed (%s); retrying", error)
    time.sleep(1.0)
