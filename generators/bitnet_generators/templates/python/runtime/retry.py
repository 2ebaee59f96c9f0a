"""Retry policy: exponential backoff with jitter, honouring ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

__all__ = ["NO_RETRY", "RetryPolicy", "parse_retry_after", "retryable_status"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class RetryPolicy:
    """How failed attempts are retried.

    ``max_retries`` after the first attempt; backoff starts at ``base_delay`` seconds and
    doubles up to ``max_delay``; a ``Retry-After`` longer than ``max_retry_after`` is not
    waited for (the error is raised at once).
    """

    max_retries: int = 3
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rand: random.Random | None = None) -> float:
        """Seconds before retry number ``attempt`` (0-based): half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        return ceiling / 2 + (rand or random).random() * ceiling / 2


NO_RETRY = RetryPolicy(max_retries=0)


def retryable_status(status: int, idempotent: bool) -> bool:
    """429 and 503 mean the server did not take the work: retried for every request. Other
    5xx (and 408) only when repeating the request is safe."""
    if status in (429, 503):
        return True
    return idempotent and status in (408, 500, 502, 504)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
