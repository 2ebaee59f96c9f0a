"""The quantizer's one thread pool for the process, and single-threaded BLAS while it runs.

Quantizing is numpy work on independent tensors; numpy releases the GIL in its loops, so
tensors run in parallel on threads. BLAS (the report's small calibration products) must then
run single-threaded: OpenBLAS threads on top of ours contend for the same cores, and on a busy
machine a multi-threaded ``[rows, k] @ [k, 16]`` product was measured 25× slower than a
single-threaded one. :func:`blas_single_threaded` sets that for the duration of a run (the
setting is process-wide in OpenBLAS, so it is restored afterwards).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

__all__ = ["blas_single_threaded", "pool", "workers"]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_blas_users = 0
_blas_limits: threadpool_limits | None = None


def workers() -> int:
    """Threads of the pool: ``BITNET_QUANT_THREADS`` or the CPUs this process may use."""
    env = os.environ.get("BITNET_QUANT_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def pool() -> ThreadPoolExecutor:
    """The process-wide quantization pool (created on first use)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="bitnet-quant")
        return _pool


@contextmanager
def blas_single_threaded() -> Iterator[None]:
    """BLAS limited to one thread inside the block (see the module docstring).

    Counted, so concurrent runs (server jobs) share one limit: the first entrant sets it and
    the last to leave restores the previous setting (nested ``threadpool_limits`` would
    restore out of order)."""
    global _blas_users, _blas_limits
    with _lock:
        if _blas_users == 0:
            _blas_limits = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limits is not None:
                _blas_limits.restore_original_limits()
                _blas_limits = None
