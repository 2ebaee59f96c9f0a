"""Loaded models kept in memory under a budget, shared by concurrent requests.

Why: loading a model costs seconds and its size in memory, so a server keeps
the models it serves loaded, shares one copy between every request, and
drops the least recently used idle one when another needs the room.

The contract:

* **One load per model.** A model is keyed by ``(model_id, backend)``. However
  many requests arrive at once, one thread loads it; the others wait for that
  load (its failure is theirs too, and the next request tries again).
* **Slots and a bounded, fair queue.** Each model runs at most
  ``slots_per_model`` requests at a time. Others wait in that model's queue,
  at most ``queue_size`` of them; one more is refused at once with
  :class:`QueueFull` (503, ``Retry-After`` estimated from recent run times),
  never parked in an unbounded backlog. Waiting requests are served
  round-robin between callers (``user``), first come first served within one
  caller, so one customer's burst cannot starve the others.
* **Memory budget.** A model counts ``size_bytes`` (its file size) from the
  moment its load starts, or what the loaded object reports as
  ``memory_bytes``. Before a load the least recently used *idle* models
  (nothing running, nobody waiting) are evicted until the new one fits;
  busy models are never evicted. If it still does not fit the request gets
  :class:`CacheBusy` (503, transient); a model larger than the whole budget
  gets :class:`ModelTooLarge` (permanent). The KV caches of running
  generations count too: a generation reserves its cache through its lease
  (:meth:`Lease.reserve`) and the batching scheduler makes it wait until
  that fits (``service/inference/batching.py``).
* **Deadlines and cancellation.** ``timeout`` bounds waiting (queue and load):
  :class:`WaitTimeout`. A waiting request that is cancelled (its task, or the
  ``cancel`` event of the thread API) leaves the queue; one whose slot was
  granted meanwhile hands it on. A load already started continues for the
  others.
* **Leases.** A granted request holds a :class:`Lease`: the model, the time it
  waited and loaded, and a ``cancel`` event to pass to the runtime.
  :meth:`Lease.start` runs work in the cache's compute threads and frees the
  slot when that work ends (not when its caller stops listening), so the slot
  count is the real concurrency.

Both an asyncio API (:meth:`ModelCache.acquire`, for the server) and a thread
API (:meth:`ModelCache.acquire_sync`, for job workers) share the same state;
a lock guards it and grants reach asyncio waiters through
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from bitnet_sdk.service.inference.batching import BatchLimits, BatchObserver, Scheduler

__all__ = [
    "CacheBusy",
    "CacheError",
    "CacheStopped",
    "Lease",
    "ModelCache",
    "ModelRef",
    "ModelSpec",
    "ModelTooLarge",
    "QueueFull",
    "WaitCancelled",
    "WaitTimeout",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Loader = Callable[["ModelSpec"], Any]

#: Seconds a run is assumed to take before one has been measured (Retry-After estimates).
_DEFAULT_RUN_S = 1.0
_MAX_RETRY_AFTER_S = 60
_POLL_S = 0.1


class CacheError(Exception):
    """Why a request could not get a model; ``status`` is the HTTP status it maps to."""

    status = 503

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFull(CacheError):
    """The model's queue holds ``queue_size`` requests already."""


class CacheBusy(CacheError):
    """No room under the budget and every loaded model is in use."""


class ModelTooLarge(CacheError):
    """The model alone is larger than the whole memory budget."""

    status = 422


class WaitTimeout(CacheError):
    """The deadline passed while waiting for a slot or for the load."""

    status = 504


class WaitCancelled(CacheError):
    """The thread API's ``cancel`` event was set while waiting."""

    status = 499


class CacheStopped(CacheError):
    """The cache was stopped (server shutting down)."""


@dataclass(frozen=True)
class ModelRef:
    """A stored model as the runtime needs it: the one model reference of the inference path.

    ``version`` (the file's sha256) changes when the file does: a request for another
    version of a cached model makes the cached copy stale.
    """

    id: str
    name: str
    kind: str
    path: Path
    size_bytes: int
    parameters: int
    version: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """What to load: a model for a backend (one cached copy per pair)."""

    model: ModelRef
    backend: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.model.id, self.backend)

    @property
    def model_id(self) -> str:
        return self.model.id

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def path(self) -> str:
        return str(self.model.path)

    @property
    def size_bytes(self) -> int:
        return self.model.size_bytes

    @property
    def version(self) -> str:
        return self.model.version


class _Waiter:
    """One request waiting for a slot; granted under the cache lock, from any thread."""

    __slots__ = ("error", "event", "future", "granted", "loop", "user")

    def __init__(self, user: str, loop: asyncio.AbstractEventLoop | None) -> None:
        self.user = user
        self.granted = False
        self.error: BaseException | None = None
        self.loop = loop
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None
        self.event = None if loop else threading.Event()

    def wake(self, error: BaseException | None = None) -> bool:
        """Deliver the grant (or ``error``); False when the waiter's loop is gone."""
        self.error = error
        if self.future is None:
            assert self.event is not None
            self.event.set()
            return True
        future, loop = self.future, self.loop
        assert loop is not None

        def deliver() -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        try:
            loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # loop closed
            return False
        return True


class _Entry:
    """Everything the cache knows about one (model, backend)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.model: Any = None
        self.loading: concurrent.futures.Future[Any] | None = None
        self.memory = 0
        self.loaded_at = 0.0
        self.last_used = time.time()
        self.running = 0
        self.queues: OrderedDict[str, deque[_Waiter]] = OrderedDict()
        self.waiting = 0
        self.run_s = _DEFAULT_RUN_S
        self.stale = False
        #: KV-cache bytes reserved by the running generations.
        self.kv_bytes = 0
        self.scheduler: Scheduler | None = None

    @property
    def idle(self) -> bool:
        return self.running == 0 and self.waiting == 0 and self.loading is None

    def enqueue(self, waiter: _Waiter) -> None:
        self.queues.setdefault(waiter.user, deque()).append(waiter)
        self.waiting += 1

    def next_waiter(self) -> _Waiter | None:
        """Round-robin between callers: the first caller's oldest waiter; that caller goes last."""
        if not self.queues:
            return None
        user, queue = next(iter(self.queues.items()))
        waiter = queue.popleft()
        if queue:
            self.queues.move_to_end(user)
        else:
            del self.queues[user]
        self.waiting -= 1
        return waiter

    def remove(self, waiter: _Waiter) -> None:
        queue = self.queues.get(waiter.user)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            self.waiting -= 1
            if not queue:
                del self.queues[waiter.user]


class Lease:
    """A granted slot on a loaded model. Release it exactly once (or let :meth:`start` do it)."""

    def __init__(self, cache: ModelCache, entry: _Entry, queue_s: float) -> None:
        self._cache = cache
        self._entry = entry
        self._released = False
        self._granted_at = time.monotonic()
        self.spec = entry.spec
        self.queue_s = queue_s
        self.load_s = 0.0
        #: Set to stop the work (client gone, deadline, shutdown); pass it to the runtime.
        self.cancel = threading.Event()
        self._reserved = 0

    @property
    def model(self) -> Any:
        return self._entry.model

    @property
    def scheduler(self) -> Scheduler:
        """The loaded language model's batching scheduler (one per cached model)."""
        return self._cache._scheduler(self._entry)

    def reserve(self, nbytes: int) -> bool:
        """Count ``nbytes`` more (a KV cache) in the memory budget, until :meth:`release`.

        False when they do not fit now, even after evicting idle models (wait for running
        work to end, then ask again); :class:`ModelTooLarge` when they never can.
        """
        if self._cache._reserve(self._entry, nbytes):
            self._reserved += nbytes
            return True
        return False

    def unreserve(self, nbytes: int) -> None:
        """Give back ``nbytes`` of what :meth:`reserve` claimed (a group that could not join whole)."""
        nbytes = min(nbytes, self._reserved)
        self._reserved -= nbytes
        self._cache._unreserve(self._entry, nbytes)

    def start(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` in the compute threads; the lease is released when it ends."""
        try:
            future = self._cache._compute.submit(fn, *args)
        except RuntimeError:  # executor shut down
            self.release()
            raise CacheStopped("the model cache is stopped") from None
        future.add_done_callback(lambda _f: self.release())
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``await`` :meth:`start`; cancelling the caller sets :attr:`cancel` (the work stops
        at its next check) and the slot is freed when the work really ends."""
        future = self.start(fn, *args)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            self.cancel.set()
            raise

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._cache._release(self._entry, self, time.monotonic() - self._granted_at,
                             self._reserved)


class ModelCache:
    """See the module docstring. ``loader(spec)`` loads a model (default: ``bitnet_sdk.load``)."""

    def __init__(
        self,
        budget_bytes: int,
        queue_size: int,
        *,
        slots_per_model: int = 1,
        loader: Loader | None = None,
        compute_threads: int = 8,
        load_threads: int = 2,
        batch: BatchLimits | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        if slots_per_model < 1 or queue_size < 0 or budget_bytes < 0:
            raise ValueError("slots_per_model >= 1, queue_size >= 0 and budget_bytes >= 0")
        self.budget_bytes = budget_bytes
        self.queue_size = queue_size
        self.slots_per_model = slots_per_model
        self.batch = batch or BatchLimits(max_batch_size=slots_per_model)
        self.observer = observer
        self._loader = loader or _default_loader
        self._lock = threading.RLock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._leases: set[Lease] = set()
        self._stopped = False
        #: Since start: grants that found the model loaded or loading, grants that had to
        #: start a load, loads that succeeded, models evicted (read with :meth:`stats`).
        self._counts = {"hits": 0, "misses": 0, "loads": 0, "evictions": 0}
        self._compute = concurrent.futures.ThreadPoolExecutor(
            compute_threads, thread_name_prefix="bitnet-infer")
        self._loads = concurrent.futures.ThreadPoolExecutor(
            load_threads, thread_name_prefix="bitnet-load")

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ModelCache:
        """A cache sized by ``Settings.model_cache_bytes``, ``model_queue_size`` and
        ``max_batch_size`` (the slots of a model: the sequences decoded together)."""
        kwargs.setdefault("slots_per_model", settings.max_batch_size)
        return cls(settings.model_cache_bytes, settings.model_queue_size, **kwargs)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run short blocking work (metering a finished generation, say) in the compute threads."""
        return self._compute.submit(fn, *args)

    # -- acquiring -----------------------------------------------------------------

    async def acquire(self, spec: ModelSpec, *, user: str = "",
                      timeout: float | None = None) -> Lease:
        """Wait for a slot on ``spec``'s model, loading it if needed (asyncio API)."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        waiter, entry = self._admit(spec, user, asyncio.get_running_loop())
        if waiter is not None:
            assert waiter.future is not None
            with self._queued(entry, waiter):
                try:
                    await asyncio.wait_for(asyncio.shield(waiter.future), _remaining(deadline))
                except TimeoutError:
                    raise WaitTimeout("timed out waiting in the model's queue") from None
        with self._loading(entry, start) as (lease, load):
            if load is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(load)),
                                           _remaining(deadline))
                except TimeoutError:
                    raise WaitTimeout("timed out waiting for the model to load") from None
        return lease

    def acquire_sync(self, spec: ModelSpec, *, user: str = "", timeout: float | None = None,
                     cancel: threading.Event | None = None) -> Lease:
        """Thread API of :meth:`acquire`; ``cancel`` set while waiting raises :class:`WaitCancelled`."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        waiter, entry = self._admit(spec, user, None)
        if waiter is not None:
            assert waiter.event is not None
            with self._queued(entry, waiter):
                _wait_sync(waiter.event.wait, deadline, cancel, "waiting in the model's queue")
                if waiter.error is not None:
                    raise waiter.error
        with self._loading(entry, start) as (lease, load):
            if load is not None:

                def loaded(slice_s: float | None) -> bool:
                    concurrent.futures.wait([load], slice_s)
                    return load.done()

                _wait_sync(loaded, deadline, cancel, "waiting for the model to load")
                load.result()
        return lease

    @contextlib.contextmanager
    def _queued(self, entry: _Entry, waiter: _Waiter) -> Iterator[None]:
        """Around the wait for a slot: a waiter that fails or gives up leaves the queue."""
        try:
            yield
        except BaseException:
            self._abandon(entry, waiter)
            raise

    @contextlib.contextmanager
    def _loading(self, entry: _Entry,
                 start: float) -> Iterator[tuple[Lease, concurrent.futures.Future[Any] | None]]:
        """The slot's lease and the load to wait for (None: loaded) around the wait for it:
        the wait's time is the lease's ``load_s``; a failed or abandoned wait releases it."""
        lease = self._lease(entry, time.monotonic() - start)
        try:
            load = self._load_future(entry)
            t0 = time.monotonic()
            yield lease, load
            if load is not None:
                lease.load_s = time.monotonic() - t0
        except BaseException:
            lease.release()
            raise

    def _admit(self, spec: ModelSpec, user: str,
               loop: asyncio.AbstractEventLoop | None) -> tuple[_Waiter | None, _Entry]:
        """Take a free slot (waiter None) or a place in the queue, or refuse."""
        with self._lock:
            if self._stopped:
                raise CacheStopped("the model cache is stopped", retry_after_s=5)
            entry = self._entries.get(spec.key)
            if entry is not None and entry.spec.version != spec.version:
                entry.stale = True
                if entry.idle:
                    self._evict(entry)
            if entry is None or entry.stale:
                entry = self._entries[spec.key] = _Entry(spec)
            if entry.running < self.slots_per_model and entry.waiting == 0:
                entry.running += 1
                return None, entry
            if entry.waiting >= self.queue_size:
                raise QueueFull(
                    f"{entry.waiting} requests are already waiting for model {spec.model_id}",
                    retry_after_s=self._retry_after(entry))
            waiter = _Waiter(user, loop)
            entry.enqueue(waiter)
            return waiter, entry

    def _abandon(self, entry: _Entry, waiter: _Waiter) -> None:
        """A waiter gave up: leave the queue, or pass on the slot granted meanwhile."""
        with self._lock:
            if waiter.granted:
                self._free_slot(entry)
            else:
                entry.remove(waiter)
                self._drop_if_unused(entry)

    def _lease(self, entry: _Entry, queue_s: float) -> Lease:
        lease = Lease(self, entry, queue_s)
        with self._lock:
            self._leases.add(lease)
        return lease

    # -- loading and eviction --------------------------------------------------------

    def _load_future(self, entry: _Entry) -> concurrent.futures.Future[Any] | None:
        """None when loaded; else the (possibly new) load everyone waits for."""
        with self._lock:
            if entry.model is not None:
                self._counts["hits"] += 1
                return None
            if entry.loading is not None:
                self._counts["hits"] += 1
            else:
                self._counts["misses"] += 1
                need = entry.spec.size_bytes
                if need > self.budget_bytes:
                    raise ModelTooLarge(
                        f"model {entry.spec.model_id} needs {need} bytes; the model cache "
                        f"holds {self.budget_bytes}")
                self._make_room(need)
                entry.memory = need
                entry.loading = self._loads.submit(self._load, entry)
            return entry.loading

    def _load(self, entry: _Entry) -> Any:
        t0 = time.monotonic()
        try:
            model = self._loader(entry.spec)
        except BaseException:
            with self._lock:
                entry.loading, entry.memory = None, 0
                self._drop_if_unused(entry)
            raise
        with self._lock:
            reported = getattr(model, "memory_bytes", None)
            if isinstance(reported, int) and reported > 0:
                entry.memory = reported
            entry.model, entry.loading = model, None
            entry.loaded_at = entry.last_used = time.time()
            self._counts["loads"] += 1
        log.info("model loaded", extra={"model_id": entry.spec.model_id,
                                        "backend": entry.spec.backend,
                                        "seconds": round(time.monotonic() - t0, 3)})
        return model

    def _make_room(self, need: int) -> None:
        """Evict idle models, least recently used first, until ``need`` more bytes fit."""
        used = sum(e.memory + e.kv_bytes for e in self._entries.values())
        if used + need <= self.budget_bytes:
            return
        idle = sorted((e for e in self._entries.values() if e.idle and e.model is not None),
                      key=lambda e: e.last_used)
        for victim in idle:
            self._evict(victim)
            used -= victim.memory
            if used + need <= self.budget_bytes:
                return
        raise CacheBusy("every loaded model is in use and no room is left for another",
                        retry_after_s=max(1, round(min(e.run_s for e in self._entries.values()))))

    def _reserve(self, entry: _Entry, nbytes: int) -> bool:
        with self._lock:
            if entry.memory + nbytes > self.budget_bytes:
                raise ModelTooLarge(
                    f"a generation of this length needs {nbytes} bytes of KV cache beside "
                    f"model {entry.spec.model_id}'s {entry.memory}; the model cache holds "
                    f"{self.budget_bytes}")
            try:
                self._make_room(nbytes)
            except CacheBusy:
                return False
            entry.kv_bytes += nbytes
            return True

    def _unreserve(self, entry: _Entry, nbytes: int) -> None:
        with self._lock:
            entry.kv_bytes -= nbytes

    def _scheduler(self, entry: _Entry) -> Scheduler:
        with self._lock:
            if entry.model is None:
                raise CacheStopped("the model is not loaded")
            if entry.scheduler is None:
                entry.scheduler = Scheduler(entry.model, self.batch, name=entry.spec.model_id,
                                            observer=self.observer,
                                            on_the_way=lambda: entry.running)
            return entry.scheduler

    def _evict(self, entry: _Entry) -> None:
        if entry.scheduler is not None:
            entry.scheduler.stop()
            entry.scheduler = None
        if self._entries.get(entry.spec.key) is entry:  # a stale copy may have a successor
            del self._entries[entry.spec.key]
        if entry.model is not None:
            self._counts["evictions"] += 1
        log.info("model evicted", extra={"model_id": entry.spec.model_id,
                                         "backend": entry.spec.backend,
                                         "memory_bytes": entry.memory})
        entry.model = None

    def _drop_if_unused(self, entry: _Entry) -> None:
        if entry.idle and (entry.model is None or entry.stale):
            if self._entries.get(entry.spec.key) is entry:
                del self._entries[entry.spec.key]

    def invalidate(self, model_id: str) -> None:
        """Forget ``model_id`` (deleted or replaced): idle copies now, busy ones when idle."""
        with self._lock:
            for entry in [e for e in self._entries.values() if e.spec.model_id == model_id]:
                entry.stale = True
                if entry.idle:
                    self._evict(entry)

    # -- releasing --------------------------------------------------------------------

    def _release(self, entry: _Entry, lease: Lease, held_s: float, reserved: int) -> None:
        with self._lock:
            entry.kv_bytes -= reserved
            self._leases.discard(lease)
            entry.last_used = time.time()
            entry.run_s = 0.8 * entry.run_s + 0.2 * held_s
            self._free_slot(entry)

    def _free_slot(self, entry: _Entry) -> None:
        """Give the slot to the next waiter that can still take it, else free it."""
        while True:
            waiter = entry.next_waiter()
            if waiter is None:
                entry.running -= 1
                if entry.stale and entry.idle:
                    self._evict(entry)
                else:
                    self._drop_if_unused(entry)
                return
            waiter.granted = True
            if waiter.wake():
                return

    def _retry_after(self, entry: _Entry) -> int:
        ahead = entry.waiting + entry.running
        seconds = entry.run_s * ahead / self.slots_per_model
        return int(min(_MAX_RETRY_AFTER_S, max(1, math.ceil(seconds))))

    # -- reporting and stopping ----------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """Loaded models as the API's ``LoadedModel`` objects, most recently used first."""
        with self._lock:
            rows = [e for e in self._entries.values() if e.model is not None]
            rows.sort(key=lambda e: e.last_used, reverse=True)
            return [{
                "model_id": e.spec.model_id,
                "name": e.spec.name,
                "backend": e.spec.backend,
                "memory_bytes": e.memory,
                "loaded_at": _iso(e.loaded_at),
                "last_used_at": _iso(e.last_used),
                "running": e.running,
                "queued": e.waiting,
            } for e in rows]

    def stats(self) -> dict[str, int]:
        """Totals: budget, bytes used (loaded and loading), models, running, queued, loading,
        and the counters since start (``hits``, ``misses``, ``loads``, ``evictions``)."""
        with self._lock:
            entries = list(self._entries.values())
            return {
                **self._counts,
                "budget_bytes": self.budget_bytes,
                "used_bytes": sum(e.memory + e.kv_bytes for e in entries),
                "models": sum(e.model is not None for e in entries),
                "loading": sum(e.loading is not None for e in entries),
                "running": sum(e.running for e in entries),
                "queued": sum(e.waiting for e in entries),
            }

    def queue_depths(self) -> dict[str, int]:
        """Requests waiting per model id, for every model the cache holds or is loading."""
        with self._lock:
            depths: dict[str, int] = {}
            for entry in self._entries.values():
                depths[entry.spec.model_id] = depths.get(entry.spec.model_id, 0) + entry.waiting
            return depths

    def batch_stats(self) -> dict[str, int]:
        """Sequences in the batching schedulers: decoding together, and admitted but
        waiting for KV-cache memory."""
        with self._lock:
            schedulers = [e.scheduler for e in self._entries.values() if e.scheduler]
        counts = [s.counts() for s in schedulers]
        return {"active": sum(a for a, _ in counts), "waiting": sum(w for _, w in counts)}

    def stop(self) -> None:
        """Refuse new requests, fail the waiting ones, cancel running work, drop the models."""
        with self._lock:
            self._stopped = True
            for entry in list(self._entries.values()):
                while (waiter := entry.next_waiter()) is not None:
                    waiter.wake(CacheStopped("the server is shutting down", retry_after_s=5))
            for lease in list(self._leases):
                lease.cancel.set()
            for entry in self._entries.values():
                if entry.scheduler is not None:
                    entry.scheduler.stop()
        self._compute.shutdown(wait=False, cancel_futures=True)
        self._loads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for entry in list(self._entries.values()):
                if entry.idle:
                    self._evict(entry)


def _default_loader(spec: ModelSpec) -> Any:
    from bitnet_sdk.loading import load

    return load(spec.path, backend=spec.backend)


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def _wait_sync(wait: Callable[[float | None], bool], deadline: float | None,
               cancel: threading.Event | None, what: str) -> None:
    """Poll ``wait(slice)`` until it returns True, the deadline passes or ``cancel`` is set."""
    while True:
        remaining = _remaining(deadline)
        if remaining == 0.0:
            raise WaitTimeout(f"timed out {what}")
        slice_s = remaining if cancel is None else min(_POLL_S, remaining or _POLL_S)
        if wait(slice_s):
            return
        if cancel is not None and cancel.is_set():
            raise WaitCancelled(f"cancelled while {what}")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
