"""Running a kernel over all cores: split a range of rows, one slice per thread.

Kernels are called through ``ctypes``, which releases the GIL for the call, so
plain Python threads run them truly in parallel. The calling thread runs the
first slice itself (one hand-off fewer per call); the other slices go to a
process-wide pool of ``num_threads - 1`` workers created on first use.

Thread count: the explicit argument, else ``BITNET_NUM_THREADS``, else the
CPUs this process may run on (``os.sched_getaffinity``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

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


class ThreadPool:
    """``num_threads`` threads (the caller's included) running slices of one job at a time."""

    def __init__(self, num_threads: int) -> None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.num_threads = num_threads
        self._executor = (
            ThreadPoolExecutor(num_threads - 1, thread_name_prefix="bitnet-kernel")
            if num_threads > 1
            else None
        )

    def run(self, fn: Callable[[int, int], None], slices: list[tuple[int, int]]) -> None:
        """Call ``fn(begin, end)`` for every slice, in parallel; re-raise the first error."""
        if not slices:
            return
        if self._executor is None or len(slices) == 1:
            for begin, end in slices:
                fn(begin, end)
            return
        futures: list[Future[None]] = [self._executor.submit(fn, b, e) for b, e in slices[1:]]
        try:
            fn(*slices[0])
        finally:
            for fut in futures:
                fut.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


_pools: dict[int, ThreadPool] = {}
_pools_lock = threading.Lock()


def get_pool(num_threads: int) -> ThreadPool:
    """The shared pool of ``num_threads`` threads (created on first use)."""
    with _pools_lock:
        pool = _pools.get(num_threads)
        if pool is None:
            pool = _pools[num_threads] = ThreadPool(num_threads)
        return pool
