"""Errors the client raises: :class:`ApiError` for error answers, with the problem's fields."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from .retry import parse_retry_after

__all__ = ["ApiError", "ProblemField", "WaitTimeoutError"]


@dataclass(frozen=True)
class ProblemField:
    """One invalid input named by a problem's ``errors`` member."""

    field: str
    message: str


@dataclass
class ApiError(Exception):
    """An error answer of the API.

    When the server sent Problem Details (RFC 9457, ``application/problem+json``) its members
    are copied here; ``body`` keeps the parsed (or raw) body whatever it was.
    """

    status: int
    type: str = "about:blank"
    title: str = ""
    detail: str | None = None
    instance: str | None = None
    errors: list[ProblemField] = field(default_factory=list)
    request_id: str | None = None
    #: Seconds from ``Retry-After`` (None when absent).
    retry_after: float | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers, repr=False)
    body: Any = field(default=None, repr=False)

    def __str__(self) -> str:
        title = self.title or f"HTTP {self.status}"
        return f"{self.status} {title}: {self.detail}" if self.detail else f"{self.status} {title}"

    def __hash__(self) -> int:  # exceptions must stay hashable (logging, tracebacks)
        return id(self)

    @classmethod
    def from_problem(cls, problem: Any, *, status: int | None = None, headers: httpx.Headers | None = None,
                     retry_after: float | None = None) -> ApiError:
        """Build from a problem document (a parsed body or a stream's error event)."""
        p = problem if isinstance(problem, dict) else {}

        def text(key: str) -> str | None:
            value = p.get(key)
            return value if isinstance(value, str) else None

        errors = [ProblemField(str(e.get("field", "")), str(e.get("message", "")))
                  for e in p.get("errors") or [] if isinstance(e, dict)]
        code = status if status is not None else p.get("status") if isinstance(p.get("status"), int) else 0
        return cls(status=code, type=text("type") or "about:blank", title=text("title") or "",
                   detail=text("detail"), instance=text("instance"), errors=errors,
                   request_id=text("request_id"), retry_after=retry_after,
                   headers=headers if headers is not None else httpx.Headers(), body=problem)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Build from an error answer whose body has been read."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        body: Any = response.text
        if "json" in response.headers.get("Content-Type", ""):
            try:
                body = json.loads(response.content)
            except ValueError:
                pass
        if isinstance(body, dict):
            error = cls.from_problem(body, status=response.status_code, headers=response.headers,
                                     retry_after=retry_after)
        else:
            error = cls(status=response.status_code, title=response.reason_phrase, retry_after=retry_after,
                        headers=response.headers, body=body)
        if error.request_id is None:  # servers also name the request in a header
            error.request_id = response.headers.get("X-Request-ID")
        return error


class WaitTimeoutError(TimeoutError):
    """A job waiter gave up before the job reached a final state; ``last`` is the last state seen."""

    def __init__(self, last: Any, timeout: float) -> None:
        super().__init__(f"the job did not finish within {timeout:g} s")
        self.last = last
