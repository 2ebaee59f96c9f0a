"""The per-customer request limiter: one interface, in the database or in Redis.

:func:`limiter_for` picks the implementation from the settings: with ``redis_url``
empty, :class:`DatabaseLimiter` (:mod:`~bitnet_sdk.service.accounting.ratelimit`, a
sliding-window log in the store); with a ``redis://`` URL, :class:`RedisLimiter`, the
same sliding window kept in a Redis sorted set per key and checked and consumed by
one server-side Lua script, so it is atomic and exact across every process and host
sharing that Redis, without a database write per request.

Both give the same :class:`~bitnet_sdk.service.accounting.ratelimit.Decision` for the
same history (the same ``RateLimit`` headers and ``Retry-After``): a hit at ``ts``
counts while ``now - window < ts <= now``. With ``now`` omitted, Redis uses its own
clock, so hosts with skewed clocks still agree.

The login throttle and the sign-up budget stay in the database (rare, and their
history is read by other code).
"""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from bitnet_sdk.service.accounting import ratelimit
from bitnet_sdk.service.accounting.ratelimit import Decision, decide

if TYPE_CHECKING:
    from bitnet_sdk.config import Settings

__all__ = ["DatabaseLimiter", "Limiter", "RedisLimiter", "limiter_for"]


class Limiter(Protocol):
    """Sliding-window request counting shared by every process using the same backing store."""

    def check_and_consume(self, key: str, limit: int, window_s: float,
                          now: float | None = None) -> Decision:
        """Count one request against ``key`` if fewer than ``limit`` fall in the last ``window_s``."""

    def peek(self, key: str, limit: int, window_s: float, now: float | None = None) -> Decision:
        """The decision :meth:`check_and_consume` would make, without counting anything."""


class DatabaseLimiter:
    """The limiter in the store (the default): see :mod:`~bitnet_sdk.service.accounting.ratelimit`."""

    def check_and_consume(self, key: str, limit: int, window_s: float,
                          now: float | None = None) -> Decision:
        return ratelimit.check_and_consume(key, limit, window_s, now)

    def peek(self, key: str, limit: int, window_s: float, now: float | None = None) -> Decision:
        return ratelimit.peek(key, limit, window_s, now)


#: KEYS[1]: the key's sorted set (member: a unique id, score: the hit's time).
#: ARGV: limit, window seconds, now ("" = Redis's clock), member, "1" to consume.
#: Returns {allowed 0/1, hits in the window, pivot time or false, now}; times as
#: strings (Redis turns Lua numbers into integers).
_SCRIPT = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local consume = ARGV[5] == '1'
local cutoff = now - window
local above = '(' .. string.format('%.17g', cutoff)
if consume then
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.17g', cutoff))
end
local count = redis.call('ZCOUNT', key, above, '+inf')
local allowed = count < limit
if allowed and consume then
  redis.call('ZADD', key, string.format('%.17g', now), ARGV[4])
  count = count + 1
end
if consume then
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
local index = 0
if not allowed then index = math.max(0, count - limit) end
local pivot = redis.call('ZRANGEBYSCORE', key, above, '+inf', 'WITHSCORES', 'LIMIT', index, 1)
local pivot_ts = false
if #pivot > 0 then pivot_ts = pivot[2] end
return {allowed and 1 or 0, count, pivot_ts, string.format('%.17g', now)}
"""


class RedisLimiter:
    """The limiter in Redis: exact across processes and hosts sharing ``url``.

    Keys live under ``prefix`` and expire one window after their last hit.
    """

    def __init__(self, url: str, prefix: str = "bitnet:ratelimit:") -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self.client = redis.Redis.from_url(url)
        self._script: Any = self.client.register_script(_SCRIPT)

    def check_and_consume(self, key: str, limit: int, window_s: float,
                          now: float | None = None) -> Decision:
        return self._run(key, limit, window_s, now, consume=True)

    def peek(self, key: str, limit: int, window_s: float, now: float | None = None) -> Decision:
        return self._run(key, limit, window_s, now, consume=False)

    def reset(self, key: str) -> None:
        """Forget every request counted against ``key``."""
        self.client.delete(self._redis_key(key))

    def close(self) -> None:
        self.client.close()

    def _redis_key(self, key: str) -> str:
        return self.prefix + ratelimit.storage_key(key)

    def _run(self, key: str, limit: int, window_s: float, now: float | None,
             *, consume: bool) -> Decision:
        member = uuid.uuid4().hex if consume else ""
        allowed, count, pivot, at = self._script(
            keys=[self._redis_key(key)],
            args=[int(limit), float(window_s), "" if now is None else repr(float(now)), member,
                  "1" if consume else "0"],
        )
        return decide(bool(allowed), limit, int(count), None if pivot is None else float(pivot),
                      float(at), window_s)


@functools.lru_cache(maxsize=4)
def _redis_limiter(url: str) -> RedisLimiter:
    return RedisLimiter(url)


_DATABASE = DatabaseLimiter()


def limiter_for(settings: Settings) -> Limiter:
    """The limiter the settings choose (one shared instance per Redis URL)."""
    if settings.redis_url:
        return _redis_limiter(settings.redis_url)
    return _DATABASE
