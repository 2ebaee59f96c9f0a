"""Polling a job until it reaches a final state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import WaitTimeoutError

__all__ = ["await_for", "wait_for"]

T = TypeVar("T")


def wait_for(poll: Callable[[], T], done: Callable[[T], bool], *, timeout: float = 600.0,
             interval: float = 0.25, max_interval: float = 5.0) -> T:
    """Call ``poll`` until ``done`` holds for its answer, pausing ``interval`` seconds (growing
    by half each time, up to ``max_interval``); :class:`WaitTimeoutError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        state = poll()
        if done(state):
            return state
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeoutError(state, timeout)
        time.sleep(min(interval, left))
        interval = min(max_interval, interval * 1.5)


async def await_for(poll: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout: float = 600.0,
                    interval: float = 0.25, max_interval: float = 5.0) -> T:
    """The ``async`` twin of :func:`wait_for`."""
    deadline = time.monotonic() + timeout
    while True:
        state = await poll()
        if done(state):
            return state
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeoutError(state, timeout)
        await asyncio.sleep(min(interval, left))
        interval = min(max_interval, interval * 1.5)
