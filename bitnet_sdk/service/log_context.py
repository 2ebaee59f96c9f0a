"""Who a log line is about: the request id, user id and job id of the work being done.

The server binds the request id (and, once security verified it, the user id) for the
whole request; a job created by the request keeps its request id, and the worker that runs
the job and the dispatcher that delivers its webhook bind it again, so one id ties the
access line, the job's lines and the webhook's lines together. :class:`ContextFilter` copies
the bound fields onto every log record (a JSON log line shows them as keys). Tokens,
passwords and keys are never bound here.

A ``ContextVar`` holds the fields, so threads started with ``asyncio.to_thread`` (which
copies the context) see the request's fields too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar, Token

__all__ = ["FIELDS", "ContextFilter", "bind", "bound", "current", "unbind"]

#: The fields a log record may carry, in the order text lines show them.
FIELDS = ("request_id", "user_id", "job_id")

_fields: ContextVar[dict[str, str] | None] = ContextVar("bitnet_log_fields", default=None)


def current() -> dict[str, str]:
    """The fields bound now (a copy)."""
    return dict(_fields.get() or {})


def bind(**fields: str | None) -> Token[dict[str, str] | None]:
    """Add ``fields`` (None values ignored) to the current ones until :func:`unbind`."""
    merged = {**(_fields.get() or {}), **{k: v for k, v in fields.items() if v}}
    return _fields.set(merged)


def unbind(token: Token[dict[str, str] | None]) -> None:
    _fields.reset(token)


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """``with bound(job_id=…):`` the fields hold inside the block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (a field the call's ``extra`` set wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_fields.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True
