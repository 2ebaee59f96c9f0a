"""Cancelling a running generation from any server process.

Every generation started with a ``cancel`` event (SSE streams, WebSocket generations,
OpenAI-compatible streams) is registered here under its owner and request id while it
runs (:meth:`StreamCancels.watch`). :meth:`StreamCancels.request` sets the event of a
matching generation in this process and, when the servers share a Redis
(``Settings.redis_url``), publishes the request on :data:`CHANNEL`; every process's
subscriber sets the event of its own matching generation. Without Redis a request reaches
only the process that received it (one process, or a load balancer that routes a
client's requests to one process); the database is not polled for it.

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
from typing import Any

__all__ = ["CHANNEL", "StreamCancels", "board"]

log = logging.getLogger(__name__)

CHANNEL = "bitnet:stream-cancels"


class StreamCancels:
    """The running generations of this process, cancellable by owner and request id."""

    def __init__(self, redis_url: str = "", channel: str = CHANNEL) -> None:
        self.redis_url, self.channel = redis_url, channel
        self._lock = threading.Lock()
        self._running: dict[str, list[tuple[str | None, threading.Event]]] = {}
        self._client: Any = None
        self._listener: threading.Thread | None = None

    @contextmanager
    def watch(self, owner: str | None, request_id: str, event: threading.Event) -> Iterator[None]:
        """Register a generation for the duration of the block."""
        self._listen()
        entry = (owner, event)
        with self._lock:
            self._running.setdefault(request_id, []).append(entry)
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
        """Subscribe once (synchronously: no later request is missed) and start the reader."""
        if not self.redis_url or self._listener is not None:
            return
        with self._lock:
            if self._listener is not None:
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


_boards: dict[tuple[str, int], StreamCancels] = {}
_boards_lock = threading.Lock()


def board(redis_url: str) -> StreamCancels:
    """The process's board for ``redis_url`` (a forked process makes its own)."""
    key = (redis_url, os.getpid())
    with _boards_lock:
        if key not in _boards:
            _boards[key] = StreamCancels(redis_url)
        return _boards[key]
