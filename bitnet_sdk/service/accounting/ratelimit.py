"""Rate limits shared by every server process: an exact sliding-window log in the database.

Each allowed request is one :class:`~bitnet_sdk.store.models.RateLimitHit`
row ``(key, ts)``; a request is allowed when fewer than ``limit`` rows of its
key lie in ``(now - window, now]``. So a customer gets exactly their tier's
count in any window of that length, then 429s, whatever the number of
processes or hosts, as long as they share the database.

Check-and-consume is one transaction serialised per key: SQLite's
``BEGIN IMMEDIATE`` (one writer at a time for the file), PostgreSQL's
``SELECT … FOR UPDATE`` on the key's :class:`RateLimitCounter` row. The
counter row also keeps the number of hits, so a check costs a few indexed
statements, not a scan of the window: rows that left the window are deleted
(and subtracted) as they expire.

Headers follow draft-ietf-httpapi-ratelimit-headers (RateLimit-Policy /
RateLimit, ``t`` = seconds until more quota is available).
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass

import peewee

from bitnet_sdk.config import Settings
from bitnet_sdk.store.db import resolve, write_transaction
from bitnet_sdk.store.models import RateLimitCounter, RateLimitHit

__all__ = [
    "HOUR",
    "Decision",
    "check_and_consume",
    "customer_key",
    "decide",
    "hits_in_window",
    "peek",
    "pivot_index",
    "policy_header",
    "prune_idle",
    "prune_prefix",
    "ratelimit_header",
    "ratelimit_headers",
    "reset",
    "storage_key",
    "tier_limit",
]

HOUR = 3600
_MAX_KEY = 200


@dataclass(frozen=True)
class Decision:
    """The outcome of one check.

    ``remaining``: requests left in the window after this one. ``reset_s``:
    seconds until more quota becomes available (the oldest counted request
    leaves the window). ``retry_after_s``: when denied, seconds until a retry
    can succeed (0 when allowed).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int
    window_s: int


def pivot_index(allowed: bool, limit: int, count: int) -> int:
    """Which hit's expiry frees the next slot (0-based, oldest first) with ``count`` in the window.

    The oldest when allowed; when over the limit, the one that brings the count back under it.
    """
    return 0 if allowed else max(0, count - limit)


def decide(allowed: bool, limit: int, count: int, pivot: float | None, at: float,
           window_s: float) -> Decision:
    """The :class:`Decision` for ``count`` hits in the window at time ``at`` (every limiter's).

    ``pivot``: time of the hit :func:`pivot_index` names (None: no hit in the window).
    """
    window = int(window_s)
    reset_s = _seconds(pivot + window_s - at) if pivot is not None else window
    if allowed:
        return Decision(True, limit, max(0, limit - count), reset_s, 0, window)
    retry = max(1, reset_s) if limit > 0 else window
    return Decision(False, limit, 0, retry, retry, window)


def storage_key(key: str) -> str:
    """Keys longer than the column holds are replaced by their hash (same key, same hash),
    after the key's family (the text up to its first ``:``, which :func:`prune_prefix` reads)."""
    if len(key) <= _MAX_KEY:
        return key
    family = key.split(":", 1)[0][:64] + ":" if ":" in key else ""
    return family + "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def customer_key(user_id: str) -> str:
    """The limiter key of a customer (all their tokens and API keys share it)."""
    return f"user:{user_id}"


def tier_limit(settings: Settings, tier: str) -> tuple[int, int]:
    """``(limit, window_s)`` of ``tier`` (unknown tiers get the smallest configured limit)."""
    tiers = settings.tiers
    limits = tiers.get(tier) or min(tiers.values(), key=lambda t: t.requests_per_hour)
    return limits.requests_per_hour, HOUR


def _seconds(value: float) -> int:
    return max(0, math.ceil(value - 1e-9))


@functools.lru_cache(maxsize=8)
def _statements(param: str, for_update: bool) -> dict[str, str]:
    """The hot path's SQL, written once per dialect.

    Plain SQL both databases accept; peewee's query building cost more than
    the statements themselves (about 5x, profiled), and this runs on every request.
    """
    p, counters, hits = param, RateLimitCounter._meta.table_name, RateLimitHit._meta.table_name
    return {
        "lock": f'SELECT "count" FROM {counters} WHERE "key" = {p}' + (" FOR UPDATE" if for_update else ""),
        "create": f'INSERT INTO {counters} ("key", "count", updated_at) VALUES ({p}, 0, {p}) '
        "ON CONFLICT DO NOTHING",
        "expire": f'DELETE FROM {hits} WHERE "key" = {p} AND ts <= {p}',
        "hit": f'INSERT INTO {hits} ("key", ts) VALUES ({p}, {p})',
        "store": f'UPDATE {counters} SET "count" = {p}, updated_at = {p} WHERE "key" = {p}',
        "nth": f'SELECT ts FROM {hits} WHERE "key" = {p} AND ts > {p} ORDER BY ts LIMIT 1 OFFSET {p}',
    }


def _sql() -> tuple[peewee.Database, dict[str, str]]:
    db = resolve()
    return db, _statements(db.param, isinstance(db, peewee.PostgresqlDatabase))


def _nth_oldest(key: str, cutoff: float, n: int) -> float | None:
    """Time of the ``n``-th oldest (0-based) hit of ``key`` still in the window."""
    db, sql = _sql()
    row = db.execute_sql(sql["nth"], (key, cutoff, n)).fetchone()
    return None if row is None else float(row[0])


def check_and_consume(key: str, limit: int, window_s: float, now: float | None = None) -> Decision:
    """Count one request against ``key`` if fewer than ``limit`` fall in the last ``window_s``."""
    at = time.time() if now is None else now
    key = storage_key(key)
    cutoff = at - window_s
    db, sql = _sql()
    with write_transaction(db):
        # Lock the key's counter row (creating it on first use) until commit.
        row = db.execute_sql(sql["lock"], (key,)).fetchone()
        if row is None:
            db.execute_sql(sql["create"], (key, at))
            row = db.execute_sql(sql["lock"], (key,)).fetchone()
        expired = db.execute_sql(sql["expire"], (key, cutoff)).rowcount
        count = max(0, int(row[0]) - max(0, expired))
        allowed = count < limit
        if allowed:
            db.execute_sql(sql["hit"], (key, at))
            count += 1
        db.execute_sql(sql["store"], (count, at, key))
        # The hit whose expiry frees the next slot: the oldest when allowed,
        # the (count - limit)-th oldest when over the limit.
        pivot = _nth_oldest(key, cutoff, pivot_index(allowed, limit, count))
    return decide(allowed, limit, count, pivot, at, window_s)


def peek(key: str, limit: int, window_s: float, now: float | None = None) -> Decision:
    """The decision :func:`check_and_consume` would make, without counting anything."""
    at = time.time() if now is None else now
    key = storage_key(key)
    cutoff = at - window_s
    count = RateLimitHit.select().where(RateLimitHit.key == key, RateLimitHit.ts > cutoff).count()
    allowed = count < limit
    pivot = _nth_oldest(key, cutoff, pivot_index(allowed, limit, count))
    return decide(allowed, limit, count, pivot, at, window_s)


def hits_in_window(key: str, window_s: float, now: float | None = None) -> tuple[int, float | None]:
    """How many hits ``key`` has in the last ``window_s`` seconds, and the time of the latest."""
    at = time.time() if now is None else now
    count, latest = (RateLimitHit.select(peewee.fn.COUNT(RateLimitHit.id),
                                         peewee.fn.MAX(RateLimitHit.ts))
                     .where(RateLimitHit.key == storage_key(key), RateLimitHit.ts > at - window_s)
                     .tuples().get())
    return int(count or 0), None if latest is None else float(latest)


def reset(key: str) -> None:
    """Forget every request counted against ``key``."""
    key = storage_key(key)
    with write_transaction():
        RateLimitHit.delete().where(RateLimitHit.key == key).execute()
        RateLimitCounter.delete().where(RateLimitCounter.key == key).execute()


def prune_idle(max_window_s: float, now: float | None = None) -> int:
    """Drop keys unused for longer than the longest window (periodic maintenance).

    Active keys prune themselves on every check; this clears the rest.
    Returns the number of keys dropped.
    """
    cutoff = (time.time() if now is None else now) - max_window_s
    with write_transaction():
        idle = RateLimitCounter.select(RateLimitCounter.key).where(
            RateLimitCounter.updated_at <= cutoff
        )
        RateLimitHit.delete().where(
            RateLimitHit.key.in_(idle), RateLimitHit.ts <= cutoff
        ).execute()
        return (
            RateLimitCounter.delete()
            .where(RateLimitCounter.updated_at <= cutoff)
            .execute()
        )


def prune_prefix(prefix: str, idle_s: float, now: float | None = None, batch: int = 64) -> int:
    """Drop at most ``batch`` keys starting with ``prefix`` unused for ``idle_s`` seconds
    (their window: every hit of such a key lies outside it), hits and counters.

    Bounded work, so it can run on every write of a family of keys whose members are
    never seen again (one per client address); returns the number of keys dropped.
    """
    cutoff = (time.time() if now is None else now) - idle_s
    C, H = RateLimitCounter, RateLimitHit
    with write_transaction():
        keys = [key for (key,) in C.select(C.key)
                .where(C.key.startswith(prefix), C.updated_at <= cutoff)
                .limit(batch).tuples()]
        if keys:
            H.delete().where(H.key.in_(keys)).execute()
            C.delete().where(C.key.in_(keys)).execute()
    return len(keys)


def _sf_string(value: str) -> str:
    """An RFC 8941 sf-string (printable ASCII, quotes and backslashes escaped)."""
    if any(not (0x20 <= ord(c) < 0x7F) for c in value):
        raise ValueError(f"policy name must be printable ASCII: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_header(name: str, limit: int, window_s: int) -> str:
    """``RateLimit-Policy`` value, e.g. ``"hour";q=1000;w=3600``."""
    return f"{_sf_string(name)};q={int(limit)};w={int(window_s)}"


def ratelimit_header(name: str, decision: Decision) -> str:
    """``RateLimit`` value, e.g. ``"hour";r=123;t=1800``."""
    return f"{_sf_string(name)};r={decision.remaining};t={decision.reset_s}"


def ratelimit_headers(decision: Decision, name: str = "hour") -> dict[str, str]:
    """All response headers for ``decision`` (``Retry-After`` only on denial)."""
    headers = {
        "RateLimit-Policy": policy_header(name, decision.limit, decision.window_s),
        "RateLimit": ratelimit_header(name, decision),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after_s)
    return headers
