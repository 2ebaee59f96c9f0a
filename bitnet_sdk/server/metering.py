"""The current request's usage: what handlers add to it, and quota checks before work.

Every authenticated request is metered: the rate-limit middleware
(:mod:`bitnet_sdk.server.ratelimit_middleware`) opens a :class:`RequestUsage`
for it and, once the response is complete (after the last chunk of a stream),
writes one :class:`~bitnet_sdk.store.models.UsageRecord` with the request's
operationId, response status, and what the handler added. Handlers never
write usage records for their own request; they call these functions::

    from bitnet_sdk.server import metering

    async def run_inference(body, user):
        # Before starting work: 429 problem ``quota-exceeded`` when it would not fit.
        await metering.acheck_quota("inference_tokens", body.get("max_tokens", 16))
        ...
        metering.add_usage(tokens_in=len(prompt_ids), tokens_out=n, compute_units=cu)

    # Quantization jobs are not metered here: their quota is reserved with the
    # jobs themselves (bitnet_sdk.service.accounting.usage.reserve_quantize_jobs).

* :func:`add_usage` may be called many times (for example per streamed token);
  amounts add up. Outside a metered request it does nothing and returns False.
* Quota kinds: ``quantize_jobs``, ``inference_tokens`` (prompt + completion),
  ``compute_units``; limits per tier and month come from ``Settings.tiers``.
  A check counts what this request already added. Inference reserves its
  tokens and compute units before it runs
  (:mod:`bitnet_sdk.service.accounting.reservations`) and hands its
  reservation to this meter with its usage (:func:`usage_hook`):
  :func:`write_record` deletes it in the transaction that writes the record.
* A handler that computes (inference) takes :func:`usage_hook`: from then on the
  request's record exists in the database, open, and is kept up to date while it
  runs (:mod:`bitnet_sdk.service.accounting.open_usage`); the end of the response
  makes it final. A process killed mid-request leaves it to be finalised by another.
* Work outside a request (job workers, WebSocket sessions) records usage with
  :func:`bitnet_sdk.service.accounting.usage.record_usage`, or wraps each unit of work in
  :func:`metered`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from bitnet_sdk.config import Settings
from bitnet_sdk.server.context import current
from bitnet_sdk.service.accounting import open_usage, reservations, usage
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.models import User

__all__ = [
    "RequestUsage",
    "UsageHook",
    "acheck_quota",
    "add_usage",
    "bind",
    "check_quota",
    "current_usage",
    "metered",
    "quota_problem",
    "unbind",
    "usage_hook",
    "write_record",
]

log = logging.getLogger(__name__)

_current: ContextVar[RequestUsage | None] = ContextVar("bitnet_request_usage", default=None)


@dataclass
class RequestUsage:
    """What one request used so far; written as one usage record when it ends."""

    user_id: str
    tier: str
    operation: str
    request_id: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    compute_units: float = 0.0
    #: Quota reservations whose usage this request's record carries (deleted with it).
    reservations: list[str] = field(default_factory=list)
    #: The part of the amounts above that those reservations still hold in the database.
    held_tokens: int = 0
    held_units: float = 0.0

    #: What running computations of this request used so far (not yet added above).
    live: list[Callable[[], open_usage.Amounts]] = field(default_factory=list)
    #: Its record, written at admission while the request runs (inference requests).
    open_record: open_usage.OpenRecord | None = None

    def so_far(self) -> open_usage.Amounts:
        """Tokens in, tokens out and compute units used so far, running work included."""
        amounts = [(self.tokens_in, self.tokens_out, self.compute_units)]
        amounts += [read() for read in list(self.live)]
        return (sum(a[0] for a in amounts), sum(a[1] for a in amounts),
                sum(a[2] for a in amounts))

    def pending(self, kind: str) -> float:
        """What this request adds to quota ``kind`` (not yet in the database)."""
        if kind == "inference_tokens":
            return self.tokens_in + self.tokens_out - self.held_tokens
        if kind == "compute_units":
            return self.compute_units - self.held_units
        if kind == "quantize_jobs":
            return 0  # reserved in the database with the jobs themselves
        raise ValueError(f"unknown quota kind {kind!r} (known: {', '.join(usage.QUOTA_KINDS)})")


def bind(request_usage: RequestUsage) -> Token[RequestUsage | None]:
    """Make ``request_usage`` the current one (the middleware does this per request)."""
    return _current.set(request_usage)


def unbind(token: Token[RequestUsage | None]) -> None:
    _current.reset(token)


def current_usage() -> RequestUsage | None:
    """The usage of the request being handled, or None outside a metered request."""
    return _current.get()


def add_usage(*, tokens_in: int = 0, tokens_out: int = 0, compute_units: float = 0.0) -> bool:
    """Add to the current request's usage; False (and nothing recorded) outside one.

    Negative or non-finite amounts raise ``ValueError``.
    """
    if min(tokens_in, tokens_out, compute_units) < 0 or not math.isfinite(compute_units):
        raise ValueError("usage amounts must be finite and not negative")
    request_usage = _current.get()
    if request_usage is None:
        return False
    request_usage.tokens_in += int(tokens_in)
    request_usage.tokens_out += int(tokens_out)
    request_usage.compute_units += float(compute_units)
    return True


class UsageHook:
    """``add_usage`` bound to one request's meter, callable from any thread (compute
    threads do not inherit the request's context, so it carries a copy of it)."""

    def __init__(self, request_usage: RequestUsage) -> None:
        self.request_usage = request_usage
        self.context = contextvars.copy_context()

    def __call__(self, tokens_in: int, tokens_out: int, compute_units: float,
                 reservation: str | None = None) -> None:
        """Add usage; ``reservation``, when not None, is the quota reservation that holds
        it until the request's record is written."""
        self.context.run(add_usage, tokens_in=tokens_in, tokens_out=tokens_out,
                         compute_units=compute_units)
        if reservation is not None:
            request_usage = self.request_usage
            request_usage.reservations.append(reservation)
            request_usage.held_tokens += int(tokens_in) + int(tokens_out)
            request_usage.held_units += float(compute_units)

    def progress(self, read: Callable[[], open_usage.Amounts]) -> Callable[[], None]:
        """Count ``read()`` (a computation's usage so far) in the request's open record
        until the returned function is called (just after the computation's usage was
        added through this hook)."""
        self.request_usage.live.append(read)
        return lambda: self.request_usage.live.remove(read)


def usage_hook() -> UsageHook | None:
    """This request's :class:`UsageHook`, None outside a metered request.

    The request is one that computes (inference): its usage record is opened now
    and kept up to date while it runs (:mod:`bitnet_sdk.service.accounting.open_usage`),
    so a process killed mid-request leaves it behind. No database work on the caller's
    thread.
    """
    request_usage = current_usage()
    if request_usage is None:
        return None
    if request_usage.open_record is None:
        request_usage.open_record = open_usage.keeper(
            current().settings.usage_checkpoint_s).open(open_usage.OpenRecord(
                request_usage.user_id, request_usage.operation, request_usage.request_id,
                request_usage.so_far))
    return UsageHook(request_usage)


def quota_problem(exc: usage.QuotaExceeded) -> ApiError:
    """The 429 ``quota-exceeded`` problem for ``exc``; ``Retry-After`` is the month's end."""
    detail = exc.detail
    wait = max(1, math.ceil((detail.resets_at - utcnow()).total_seconds()))
    return ApiError(
        429,
        "Quota Exceeded",
        str(exc),
        slug="quota-exceeded",
        headers={"Retry-After": str(wait)},
        **detail.as_problem_detail(),
    )


def check_quota(
    kind: str, amount: float = 1, settings: Settings | None = None
) -> usage.QuotaStatus:
    """Whether ``amount`` more of ``kind`` fits the current user's monthly quota.

    Blocking (one database query): call from sync handlers or threads, or use
    :func:`acheck_quota`. Raises the 429 :class:`Problem` when it does not fit,
    ``RuntimeError`` outside a metered request. ``settings`` defaults to the
    serving app's.
    """
    request_usage = _current.get()
    if request_usage is None:
        raise RuntimeError("check_quota() called outside a metered request")
    user = User(id=request_usage.user_id, tier=request_usage.tier)
    wanted = amount + request_usage.pending(kind)
    try:
        return usage.check_quota(user, kind, wanted, settings or current().settings)
    except usage.QuotaExceeded as exc:
        raise quota_problem(exc) from None


async def acheck_quota(kind: str, amount: float = 1) -> usage.QuotaStatus:
    """:func:`check_quota` off the event loop, for async handlers."""
    return await asyncio.to_thread(check_quota, kind, amount)


def write_record(request_usage: RequestUsage, status_code: int) -> None:
    """Store the request's final usage record (one statement: closing its open record, or
    a new one), deleting the quota reservations it settles in the same transaction.
    Blocking."""

    def record() -> None:
        if request_usage.open_record is not None and open_usage.close(
                request_usage.open_record, status_code):
            return
        usage.record_usage(
            request_usage.user_id,
            request_usage.operation,
            tokens_in=request_usage.tokens_in,
            tokens_out=request_usage.tokens_out,
            compute_units=request_usage.compute_units,
            status_code=status_code,
            request_id=request_usage.request_id,
        )

    if request_usage.reservations:
        reservations.release(request_usage.user_id, request_usage.reservations, record)
    else:
        record()


@contextlib.contextmanager
def metered(
    user_id: str, tier: str, operation: str, request_id: str | None = None
) -> Iterator[RequestUsage]:
    """Meter a unit of work outside the HTTP middleware (a WebSocket generate message).

    Binds a :class:`RequestUsage` for the block, so :func:`add_usage` and
    :func:`check_quota` work inside it, and writes its record at exit (status
    200; a raised problem's status; else 500). Blocking at exit; use from a thread.
    """
    request_usage = RequestUsage(user_id, tier, operation, request_id)
    token = bind(request_usage)
    status = 200
    try:
        yield request_usage
    except BaseException as exc:
        code = getattr(exc, "status", None)
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        raise
    finally:
        unbind(token)
        try:
            write_record(request_usage, status)
        except Exception:
            log.exception("could not record usage of %s", operation)
