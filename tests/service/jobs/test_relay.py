"""Job events cross processes through a real Redis: out from one hub, into the other, no echo."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from typing import Any

from bitnet_sdk.service.jobs.events import JobEventHub
from bitnet_sdk.service.jobs.relay import RedisEventRelay
from tests.support.redis import redis_test_url


class Recorder:
    def __init__(self, hub: JobEventHub) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.changed = threading.Condition()
        hub.subscribe(self.record)

    def record(self, job_id: str, event: dict[str, Any]) -> None:
        with self.changed:
            self.seen.append((job_id, event))
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.seen) >= count, timeout=60), self.seen
            return list(self.seen)


def test_events_reach_the_other_process_once_and_do_not_echo() -> None:
    url, channel = redis_test_url(), f"test:job-events:{uuid.uuid4().hex}"
    hubs = JobEventHub(), JobEventHub()  # one per "process"
    a, b = (Recorder(hub) for hub in hubs)
    relays = [RedisEventRelay(url, hub, channel).start() for hub in hubs]
    try:
        at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        first = {"id": 1, "job_id": "job_a", "type": "queued", "created_at": at,
                 "data": {"status": "queued", "progress": 0.0, "message": ""}}
        hubs[0].publish("job_a", first)  # written in process A
        assert b.wait_for(1) == [("job_a", {**first, "created_at": at.isoformat()})]
        second = {"id": 2, "job_id": "job_b", "type": "progress", "created_at": at.isoformat(),
                  "data": {"status": "running", "progress": 0.5, "message": "half"}}
        hubs[1].publish("job_b", second)  # written in process B
        # A sees its own event once, then B's: B did not forward A's event back.
        assert [job for job, _ in a.wait_for(2)] == ["job_a", "job_b"]
        assert a.seen[1][1] == second
        assert [job for job, _ in b.seen] == ["job_a", "job_b"]
    finally:
        for relay in relays:
            relay.stop()
