"""Cancelling a running generation from any server process.

Every generation started with a ``cancel`` event (SSE streams, WebSocket generations,
OpenAI-compatible streams) is registered here under its owner and request id while it
runs (:meth:`StreamCancels.watch`). :meth:`StreamCancels.request` sets the event of a
matching generation in this process and, when the servers share a Redis
(``Settings.redis_url``), publishes the request on :data:`CHANNEL`; every process's
subscriber sets the event of its own matching generation. Without Redis a request that
matches nothing here is written to the database (a
:class:`~bitnet_sdk.store.models.StreamCancel` row); every process with generations
running reads the rows for its running request ids every :data:`POLL_S` seconds (one
indexed query per process, not per generation or token, and none while nothing runs),
so the generation stops within that time wherever it runs. Rows older than
:data:`KEEP_S` are deleted.

The generation notices the event between two tokens and ends with ``finish_reason``
``cancelled``, exactly as a WebSocket ``cancel`` message ends it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.models import StreamCancel

__all__ = ["CHANNEL", "KEEP_S", "POLL_S", "StreamCancels", "board"]

log = logging.getLogger(__name__)

CHANNEL = "bitnet:stream-cancels"
#: Seconds between a process's reads of database cancellations (without Redis).
POLL_S = 0.5
#: Seconds a database cancellation is kept (a request id is only known once its stream runs).
KEEP_S = 60.0


class StreamCancels:
    """The running generations of this process, cancellable by owner and request id."""

    def __init__(self, redis_url: str = "", channel: str = CHANNEL) -> None:
        self.redis_url, self.channel = redis_url, channel
        self._lock = threading.Lock()
        self._running: dict[str, list[tuple[str | None, threading.Event]]] = {}
        self._client: Any = None
        self._listener: threading.Thread | None = None
        self._running_now = threading.Event()
        self._pruned = 0.0

    @contextmanager
    def watch(self, owner: str | None, request_id: str, event: threading.Event) -> Iterator[None]:
        """Register a generation for the duration of the block."""
        self._listen()
        entry = (owner, event)
        with self._lock:
            self._running.setdefault(request_id, []).append(entry)
        self._running_now.set()
        try:
            yield
        finally:
            with self._lock:
                entries = self._running.get(request_id, [])
                if entry in entries:
                    entries.remove(entry)
                if not entries:
                    self._running.pop(request_id, None)

    def request(self, owner: str | None, request_id: str) -> bool:
        """Cancel ``owner``'s generation ``request_id`` everywhere (``owner`` None: anyone's).

        Returns whether it was running in this process. Blocking (one Redis PUBLISH).
        """
        here = self.cancel_here(owner, request_id)
        if self.redis_url:
            self._redis().publish(self.channel, json.dumps(
                {"owner": owner, "request_id": request_id, "pid": os.getpid()}))
        elif not here:
            StreamCancel.create(request_id=request_id, owner=owner)
        return here

    def cancel_here(self, owner: str | None, request_id: str) -> bool:
        with self._lock:
            entries = list(self._running.get(request_id, []))
        hits = [event for who, event in entries if owner is None or who == owner]
        for event in hits:
            event.set()
        return bool(hits)

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.redis_url)
        return self._client

    def _listen(self) -> None:
        """Start the reader once: a Redis subscription (made synchronously, so no later
        request is missed), or the database poller."""
        if self._listener is not None:
            return
        with self._lock:
            if self._listener is not None:
                return
            if not self.redis_url:
                self._listener = threading.Thread(target=self._poll, name="bitnet-stream-cancels",
                                                  daemon=True)
                self._listener.start()
                return
            pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(self.channel)
            self._listener = threading.Thread(target=self._read, args=(pubsub,),
                                              name="bitnet-stream-cancels", daemon=True)
            self._listener.start()

    def _read(self, pubsub: Any) -> None:
        while True:
            try:
                message = pubsub.get_message(timeout=1.0)
            except Exception:  # Redis unreachable for a moment: requests sent meanwhile are lost
                log.exception("stream cancellation channel failed; retrying")
                threading.Event().wait(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                data = json.loads(message["data"])
                if data.get("pid") != os.getpid():  # ours was handled in request()
                    self.cancel_here(data.get("owner"), str(data["request_id"]))
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed stream cancellation")


    def _poll(self) -> None:
        while True:
            self._running_now.wait()
            threading.Event().wait(POLL_S)
            try:
                self.poll_database()
            except Exception:  # the database away for a moment: the next poll retries
                log.exception("could not read stream cancellations")

    def poll_database(self, now: float | None = None) -> int:
        """Apply the database's cancellations of this process's running generations (and
        delete them); how many generations stopped. Blocking."""
        with self._lock:
            running = list(self._running)
            if not running:
                self._running_now.clear()
        if not running:
            return 0
        at = utcnow(now)
        C = StreamCancel
        rows = list(C.select().where(C.request_id.in_(running),
                                     C.created_at > at - timedelta(seconds=KEEP_S)))
        stopped = [row.id for row in rows if self.cancel_here(row.owner, row.request_id)]
        if stopped:
            C.delete().where(C.id.in_(stopped)).execute()
        if at.timestamp() - self._pruned > KEEP_S:
            self._pruned = at.timestamp()
            C.delete().where(C.created_at <= at - timedelta(seconds=KEEP_S)).execute()
        return len(stopped)


_boards: dict[tuple[str, int], StreamCancels] = {}
_boards_lock = threading.Lock()


def board(redis_url: str) -> StreamCancels:
    """The process's board for ``redis_url`` (a forked process makes its own)."""
    key = (redis_url, os.getpid())
    with _boards_lock:
        if key not in _boards:
            _boards[key] = StreamCancels(redis_url)
        return _boards[key]
