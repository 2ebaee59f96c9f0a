"""Errors the client raises: :class:`ApiError` (one subclass per common status) for error
answers, with the problem's fields; :class:`ApiConnectionError` when no answer came."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from .retry import parse_retry_after

__all__ = [
    "ApiConnectionError", "ApiError", "ApiTimeoutError", "AuthenticationError", "BadRequestError", "BodyError",
    "ConflictError", "InternalServerError", "NotFoundError", "PermissionDeniedError", "ProblemField",
    "RateLimitError", "UnprocessableEntityError", "WaitTimeoutError", "connection_error", "error_class",
]


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
        raw_status = p.get("status")
        code = status if status is not None else raw_status if isinstance(raw_status, int) else 0
        return error_class(code, cls)(status=code, type=text("type") or "about:blank", title=text("title") or "",
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
            error = error_class(response.status_code, cls)(
                status=response.status_code, title=response.reason_phrase, retry_after=retry_after,
                headers=response.headers, body=body)
        if error.request_id is None:  # servers also name the request in a header
            error.request_id = response.headers.get("X-Request-ID")
        return error


class BadRequestError(ApiError):
    """400: the request is malformed or breaks a rule; ``errors`` names the fields."""


class AuthenticationError(ApiError):
    """401: the credential is missing, invalid or expired."""


class PermissionDeniedError(ApiError):
    """403: the credential lacks the scope (or the account the right) for this operation."""


class NotFoundError(ApiError):
    """404: no such resource, or not yours."""


class ConflictError(ApiError):
    """409: the resource's state does not allow this now (or the same idempotency key is busy)."""


class UnprocessableEntityError(ApiError):
    """422: well-formed, but the server cannot do it (e.g. a model it cannot run)."""


class RateLimitError(ApiError):
    """429: the rate limit or a quota is spent; ``retry_after`` says when to come back."""


class InternalServerError(ApiError):
    """5xx: the server failed (retried automatically where that is safe)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 422: UnprocessableEntityError, 429: RateLimitError,
}


def error_class(status: int, base: type[ApiError] = ApiError) -> type[ApiError]:
    """The :class:`ApiError` subclass for ``status`` (``base`` itself when a subclass asked)."""
    if base is not ApiError:
        return base
    if status >= 500:
        return InternalServerError
    return _BY_STATUS.get(status, ApiError)


class BodyError(ValueError):
    """A plain-dict request body that does not fit its model (raised before sending): ``field``
    names the missing required field when that is the reason."""

    def __init__(self, message: str, *, model: str, field: str | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.field = field


class ApiConnectionError(Exception):
    """No answer: the connection failed or broke (the transport error is ``__cause__``)."""


class ApiTimeoutError(ApiConnectionError):
    """No answer within the timeout."""


def connection_error(exc: BaseException) -> ApiConnectionError:
    """The :class:`ApiConnectionError` for an httpx transport error."""
    kind = ApiTimeoutError if isinstance(exc, httpx.TimeoutException) else ApiConnectionError
    return kind(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class WaitTimeoutError(TimeoutError):
    """A job waiter gave up before the job reached a final state; ``last`` is the last state seen."""

    def __init__(self, last: Any, timeout: float) -> None:
        super().__init__(f"the job did not finish within {timeout:g} s")
        self.last = last
