"""Usage records of requests still running: written at admission, never lost to a crash.

A request's usage record used to be written only when its response ended, so a
server killed (``kill -9``, power loss) in the middle of a stream lost the records
of everything it was generating. Now an inference request's record is inserted
as soon as the request is admitted, *open*: ``open_owner`` names the serving
process (:func:`process_id`), ``heartbeat_at`` says when that process last
brought the amounts up to date. The process's :class:`Keeper` thread inserts new
open records at once and updates the amounts of all of them every
``Settings.usage_checkpoint_s`` seconds (one UPDATE per running request, nothing
per token). When the request ends, :func:`close` writes the final amounts and
status and clears ``open_owner`` in one statement.

A record whose heartbeat is older than :data:`STALE_BEATS` checkpoints belongs to
a dead process: every live server's keeper finalises such records (status
:data:`STATUS_INTERRUPTED`, the amounts of the last checkpoint), so the tokens a
killed server had generated up to a few seconds before its death are billed. A
live process that was merely stalled longer than that and finalised by mistake
loses nothing either: its :func:`close` overwrites the record with the exact
final amounts (the same row, never a second record).

Open records are not final: quotas (:func:`bitnet_sdk.service.accounting.usage.month_usage`)
count only closed ones, since a running request holds its quota through its
reservation (:mod:`bitnet_sdk.service.accounting.reservations`), which its final
record replaces in one transaction; finalising a killed process's record deletes
its request's reservation in the same way. Usage reports show open records with the
amounts so far.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bitnet_sdk.store.db import write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.models import QuotaReservation, UsageRecord

__all__ = [
    "STALE_BEATS",
    "STATUS_INTERRUPTED",
    "Keeper",
    "OpenRecord",
    "close",
    "discard",
    "finalise_stale",
    "keeper",
    "process_id",
]

log = logging.getLogger(__name__)

#: Checkpoints a process may miss before its open records are taken for dead.
STALE_BEATS = 5
#: Status of a record finalised for a process that died before the response ended.
STATUS_INTERRUPTED = 500

Amounts = tuple[int, int, float]
_ids: dict[int, str] = {}


def process_id() -> str:
    """This process's identity in ``open_owner``: ``host:pid:nonce`` (a forked child and a
    reused pid get new ones)."""
    pid = os.getpid()
    if pid not in _ids:
        _ids[pid] = f"{socket.gethostname()[:60]}:{pid}:{secrets.token_hex(4)}"
    return _ids[pid]


@dataclass(eq=False)
class OpenRecord:
    """A running request's record as its process knows it.

    ``amounts`` reads what the request used so far (tokens in, tokens out, compute
    units); it is called from the keeper's thread.
    """

    user_id: str
    operation: str
    request_id: str | None
    amounts: Callable[[], Amounts]
    #: The record's id once inserted; None before.
    record_id: int | None = None
    closed: bool = False
    #: Closed by :func:`discard`: the keeper deletes the record.
    discarded: bool = False
    #: Wakes the keeper that tracks it (set by :meth:`Keeper.open`).
    wake: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _insert(entry: OpenRecord, owner: str, at: datetime) -> int:
    tokens_in, tokens_out, units = entry.amounts()
    row = UsageRecord.create(user=entry.user_id, created_at=at, day=at.date(),
                             operation=entry.operation, tokens_in=tokens_in,
                             tokens_out=tokens_out, compute_units=units, status_code=0,
                             request_id=entry.request_id, open_owner=owner, heartbeat_at=at)
    return int(row.id)


def _delete_open(record_id: int) -> None:
    R = UsageRecord
    R.delete().where(R.id == record_id, R.open_owner.is_null(False)).execute()


def close(entry: OpenRecord, status_code: int, amounts: Amounts | None = None) -> bool:
    """End ``entry``: its record gets the final amounts (``amounts``, else what
    ``entry.amounts()`` reads) and ``status_code`` and stops being open (one statement).

    False when there is no record to close (the keeper had not inserted it yet, or
    :func:`discard` came first): the caller then writes the record the usual way. Blocking.
    """
    with entry.lock:
        record_id = None if entry.closed else entry.record_id
        entry.closed = True
    if record_id is None:
        return False
    tokens_in, tokens_out, units = amounts if amounts is not None else entry.amounts()
    R = UsageRecord
    R.update(tokens_in=tokens_in, tokens_out=tokens_out, compute_units=units,
             status_code=status_code, open_owner=None, heartbeat_at=None).where(
        R.id == record_id).execute()
    return True


def discard(entry: OpenRecord) -> None:
    """Drop ``entry``'s open record unless it was closed (the request's usage will be
    written the usual way, if any). Not blocking: the keeper deletes the row."""
    with entry.lock:
        if entry.closed:
            return
        entry.closed = entry.discarded = True
    if entry.wake is not None:
        entry.wake()


def finalise_stale(stale_s: float, *, now: float | None = None, batch: int = 100) -> int:
    """Finalise the open records whose process stopped updating them ``stale_s`` ago
    (status :data:`STATUS_INTERRUPTED`, the amounts last written); how many.

    Each in one transaction with the deletion of its request's quota reservation (the
    dead process cannot settle it): the record now counts instead of the hold.
    """
    R, Q = UsageRecord, QuotaReservation
    cutoff = utcnow(now) - timedelta(seconds=stale_s)
    stale = (R.heartbeat_at < cutoff) & R.open_owner.is_null(False)
    done = 0
    for record_id, user_id, request_id in list(
            R.select(R.id, R.user, R.request_id).where(stale).limit(batch).tuples()):
        with write_transaction():
            if not R.update(status_code=STATUS_INTERRUPTED, open_owner=None,
                            heartbeat_at=None).where(R.id == record_id, stale).execute():
                continue  # closed meanwhile, or finalised by another process
            done += 1
            if request_id is not None:
                Q.delete().where(Q.user == user_id, Q.request_id == request_id).execute()
    return done


class Keeper:
    """One process's open records: inserted at once, checkpointed every ``interval_s``,
    and the dead processes' stale records finalised on the same beat."""

    def __init__(self, interval_s: float, *, thread: bool = True) -> None:
        """``thread=False``: no background thread; the owner calls :meth:`beat`."""
        self.interval_s, self.thread = interval_s, thread
        self.owner = process_id()
        self._entries: set[OpenRecord] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._checkpointed = 0.0

    def open(self, entry: OpenRecord) -> OpenRecord:
        """Track ``entry`` (its record is inserted within moments, off the caller's thread)."""
        entry.wake = self._wake.set
        with self._lock:
            self._entries.add(entry)
        self.start()
        self._wake.set()
        return entry

    def forget(self, entry: OpenRecord) -> None:
        with self._lock:
            self._entries.discard(entry)

    def start(self) -> None:
        with self._lock:
            if self.thread and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._loop, name="bitnet-open-usage",
                                                daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            due = time.monotonic() - self._checkpointed >= self.interval_s
            try:
                self.beat(checkpoint=due)
            except Exception:  # the database away for a moment: the next beat retries
                log.exception("could not bring open usage records up to date")

    def _insert(self, entry: OpenRecord, at: datetime) -> None:
        record_id = _insert(entry, self.owner, at)
        with entry.lock:
            if not entry.closed:
                entry.record_id = record_id
                return
        # Closed while the row was written: close() found no record and wrote the usage
        # itself, or the request was discarded. The row just written is not wanted.
        _delete_open(record_id)

    def beat(self, *, checkpoint: bool = True, now: float | None = None) -> None:
        """Insert new records; with ``checkpoint``, also update the others' amounts and
        finalise dead processes' records. Blocking."""
        at = utcnow(now)
        with self._lock:
            entries = list(self._entries)
        for entry in entries:
            # The entry's lock guards its fields only, never a database call: close() takes
            # it inside the request's write transaction, so holding it while waiting for the
            # database would deadlock SQLite's single writer until the busy timeout.
            with entry.lock:
                closed, discarded, record_id = entry.closed, entry.discarded, entry.record_id
            if closed:
                self.forget(entry)
                if discarded and record_id is not None:
                    _delete_open(record_id)
            elif record_id is None:
                self._insert(entry, at)
            elif checkpoint:
                tokens_in, tokens_out, units = entry.amounts()
                R = UsageRecord
                R.update(tokens_in=tokens_in, tokens_out=tokens_out, compute_units=units,
                         heartbeat_at=at).where(R.id == record_id,
                                                R.open_owner == self.owner).execute()
        if checkpoint:
            self._checkpointed = time.monotonic()
            finalise_stale(self.interval_s * STALE_BEATS, now=now)


_keepers: dict[int, Keeper] = {}
_keepers_lock = threading.Lock()


def keeper(interval_s: float) -> Keeper:
    """The process's keeper (the first caller's interval holds; a forked process makes its own)."""
    with _keepers_lock:
        pid = os.getpid()
        if pid not in _keepers:
            _keepers[pid] = Keeper(interval_s)
        return _keepers[pid]
