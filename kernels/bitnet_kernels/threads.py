"""Running a kernel over all cores: split a range of rows, one slice per thread.

Kernels are called through ``ctypes``, which releases the GIL for the call, so
plain Python threads run them truly in parallel. The calling thread runs the
first slice itself (one hand-off fewer per call); the other slices go to a
process-wide pool of ``num_threads - 1`` daemon workers created on first use.

Thread count: the explicit argument, else ``BITNET_NUM_THREADS``, else the
CPUs this process may run on (``os.sched_getaffinity``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

__all__ = ["THREADS_ENV", "ThreadPool", "default_threads", "get_pool", "split_range"]

THREADS_ENV = "BITNET_NUM_THREADS"


def default_threads(requested: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Threads to use: ``requested`` > ``$BITNET_NUM_THREADS`` > usable CPUs (at least 1)."""
    env = os.environ if environ is None else environ
    if requested is None and env.get(THREADS_ENV, "").strip():
        try:
            requested = int(env[THREADS_ENV])
        except ValueError as exc:
            raise ValueError(f"{THREADS_ENV} must be an integer, got {env[THREADS_ENV]!r}") from exc
    if requested is None:
        try:
            requested = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            requested = os.cpu_count() or 1
    if requested < 1:
        raise ValueError(f"thread count must be >= 1, got {requested}")
    return requested


def split_range(begin: int, end: int, parts: int, align: int) -> list[tuple[int, int]]:
    """Split ``[begin, end)`` into at most ``parts`` non-empty slices of whole ``align`` units.

    ``begin`` must be a multiple of ``align``; the last slice ends at ``end``.
    """
    units = -(-(end - begin) // align)
    parts = max(1, min(parts, units))
    out, start = [], begin
    for p in range(parts):
        n = units // parts + (1 if p < units % parts else 0)
        stop = min(end, start + n * align)
        if stop > start:
            out.append((start, stop))
        start = stop
    return out


class _Worker:
    """A daemon thread that runs one job at a time, handed over through two locks.

    Locks used as binary semaphores wake a thread in a few microseconds, about
    half the round trip of ``concurrent.futures`` (future, queue, condition).
    """

    def __init__(self, name: str) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self._job: tuple[Callable[[int, int], None], int, int] | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            job = self._job
            if job is None:
                return
            try:
                job[0](job[1], job[2])
            except BaseException as exc:  # handed to the caller in wait()
                self._error = exc
            self._done.release()

    def start(self, fn: Callable[[int, int], None], begin: int, end: int) -> None:
        self._job, self._error = (fn, begin, end), None
        self._go.release()

    def wait(self) -> BaseException | None:
        self._done.acquire()
        return self._error

    def stop(self) -> None:
        self._job = None
        self._go.release()


class ThreadPool:
    """``num_threads`` threads (the caller's included) running slices of one job at a time.

    One job at a time: a caller that finds the pool busy (another thread is
    running a job on it) runs its slices itself instead of waiting.
    """

    def __init__(self, num_threads: int) -> None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.num_threads = num_threads
        self._busy = threading.Lock()
        self._workers = [_Worker(f"bitnet-kernel-{i}") for i in range(1, num_threads)]

    def run(self, fn: Callable[[int, int], None], slices: list[tuple[int, int]]) -> None:
        """Call ``fn(begin, end)`` for every slice, in parallel; re-raise the first error."""
        if len(slices) <= 1 or not self._workers or not self._busy.acquire(blocking=False):
            for begin, end in slices:
                fn(begin, end)
            return
        try:
            rest = slices[1:]
            extra = rest[len(self._workers):]  # more slices than threads: run them here too
            started = []
            for worker, (begin, end) in zip(self._workers, rest, strict=False):
                worker.start(fn, begin, end)
                started.append(worker)
            error: BaseException | None = None
            try:
                for begin, end in [slices[0], *extra]:
                    fn(begin, end)
            except BaseException as exc:
                error = exc
            for worker in started:
                error = error or worker.wait()
            if error is not None:
                raise error
        finally:
            self._busy.release()

    def run_gang(self, fn: Callable[[int, int], None]) -> int:
        """Call ``fn(thread_id, n_threads)`` once on each of ``n_threads`` threads at the same time.

        For native code whose threads meet at barriers (the fused forward step):
        all of them must be running, so when another caller holds the pool this
        runs ``fn(0, 1)`` alone on the calling thread instead of queueing.
        Returns ``n_threads``; re-raises the first error.
        """
        if not self._workers or not self._busy.acquire(blocking=False):
            fn(0, 1)
            return 1
        try:
            n = len(self._workers) + 1
            for tid, worker in enumerate(self._workers, start=1):
                worker.start(fn, tid, n)
            error: BaseException | None = None
            try:
                fn(0, n)
            except BaseException as exc:
                error = exc
            for worker in self._workers:
                error = error or worker.wait()
            if error is not None:
                raise error
            return n
        finally:
            self._busy.release()

    def close(self) -> None:
        """Stop the worker threads (the pool must not be used afterwards)."""
        with self._busy:
            for worker in self._workers:
                worker.stop()
            self._workers = []


_pools: dict[int, ThreadPool] = {}
_pools_lock = threading.Lock()


def get_pool(num_threads: int) -> ThreadPool:
    """The shared pool of ``num_threads`` threads (created on first use)."""
    with _pools_lock:
        pool = _pools.get(num_threads)
        if pool is None:
            pool = _pools[num_threads] = ThreadPool(num_threads)
        return pool
