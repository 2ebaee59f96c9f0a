"""Handing the memory of large request bodies back to the operating system.

A body arrives as Tornado read chunks (tens of KiB each, below glibc's mmap threshold), so
they come from malloc's heaps, and the heaps of several threads' arenas keep what was freed
between other live allocations: after a few hundred uploads the process held about 35 MiB
that no object used any more. :func:`note_body` counts the body bytes a process has read
and, after :data:`TRIM_AFTER_BYTES` of them, asks glibc to return free pages
(``malloc_trim(0)``, off the event loop, at most once per :data:`MIN_INTERVAL_S`). Without
glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable

__all__ = ["MIN_INTERVAL_S", "TRIM_AFTER_BYTES", "note_body"]

#: Body bytes read between two trims.
TRIM_AFTER_BYTES = 4 * 1024 * 1024
#: Seconds at least between two trims (each walks every arena: a few milliseconds).
MIN_INTERVAL_S = 1.0

_state = {"bytes": 0, "last": 0.0}


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def note_body(size: int) -> None:
    """A request body of ``size`` bytes was read and is done with (call on the event loop)."""
    _state["bytes"] += size
    now = time.monotonic()
    if _state["bytes"] < TRIM_AFTER_BYTES or now - _state["last"] < MIN_INTERVAL_S:
        return
    trim = _malloc_trim()
    if trim is None:
        return
    _state["bytes"], _state["last"] = 0, now
    asyncio.get_running_loop().run_in_executor(None, trim, 0)
