"""One error for every transport: :class:`ApiError` (status, slug, title, detail, field errors).

The services and the API handlers raise ``ApiError``; nothing else describes an error to a
client. Each transport renders it once, from the RFC 9457 body :meth:`ApiError.problem`
builds:

* **HTTP, native API:** ``application/problem+json`` with the status and headers
  (:func:`bitnet_sdk.server.problems.problem_response`, installed as the app's handler
  for ``ApiError``). Server-Sent Events and batch job results carry the same body.
* **WebSocket:** an ``error`` message holding the body, or for a connection-level failure
  a close code derived from the status (:mod:`bitnet_sdk.server.websocket`).
* **OpenAI-compatible API:** ``{"error": {"message", "type", "param", "code"}}``
  (:func:`bitnet_sdk.service.inference.openai_compat.error_from_problem`), whose ``param``
  and ``code`` come from the ``param`` and ``openai_code`` members when a raiser knows them.

The ``slug`` names the problem ``type`` (``urn:bitnet:problem:<slug>``; none means
``about:blank``); the spec's ``Problem`` schema lists the members a body may carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "PROBLEM_TYPE_PREFIX",
    "ApiError",
    "bad_request",
    "conflict",
    "forbidden",
    "not_found",
    "problem_type",
    "too_many_requests",
    "unprocessable",
]

PROBLEM_TYPE_PREFIX = "urn:bitnet:problem:"


def problem_type(slug: str | None) -> str:
    """The problem ``type`` URI for ``slug`` (``about:blank`` without one)."""
    return f"{PROBLEM_TYPE_PREFIX}{slug}" if slug else "about:blank"


class ApiError(Exception):
    """An error to report to the client: ``raise ApiError(404, "Not Found", "…", slug=…)``.

    ``errors`` lists the invalid fields (``field``, ``location``, ``rule``, ``message``);
    ``headers`` go on an HTTP answer only (``Retry-After``); every other keyword is an
    extension member of the body (``request_id``, ``limit_bytes``, ``param`` …).
    """

    def __init__(self, status: int, title: str, detail: str | None = None, *,
                 slug: str | None = None, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, **ext: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.errors = errors
        self.headers = dict(headers or {})
        self.ext = ext

    @property
    def type(self) -> str:
        return problem_type(self.slug)

    def problem(self, request_id: str | None = None) -> dict[str, Any]:
        """The RFC 9457 body (``request_id`` added when given and not already a member)."""
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status,
                                "detail": self.detail, **self.ext}
        if self.errors is not None:
            body["errors"] = self.errors
        if request_id and "request_id" not in body:
            body["request_id"] = request_id
        return body

    @classmethod
    def from_problem(cls, body: Mapping[str, Any], *, title: str = "Error",
                     **ext: Any) -> ApiError:
        """The error a stored problem body describes (a failed job's), ``ext`` added:
        the inverse of :meth:`problem`. ``title`` when the body has none."""
        members = dict(body)
        status = int(members.pop("status", 500))
        title = str(members.pop("title", title))
        detail = members.pop("detail", None)
        kind = str(members.pop("type", ""))
        slug = kind.removeprefix(PROBLEM_TYPE_PREFIX) if kind.startswith(PROBLEM_TYPE_PREFIX) else None
        return cls(status, title, detail, slug=slug, errors=members.pop("errors", None),
                   **{**members, **ext})

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.title!r}, {self.detail!r}, slug={self.slug!r})"


def bad_request(detail: str, **ext: Any) -> ApiError:
    return ApiError(400, "Bad Request", detail, slug="bad-request", **ext)


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "Forbidden", detail, slug="forbidden")


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "Not Found", f"{what} {ident!r} does not exist.", slug="not-found")


def conflict(detail: str) -> ApiError:
    return ApiError(409, "Conflict", detail, slug="conflict")


def unprocessable(detail: str, **ext: Any) -> ApiError:
    return ApiError(422, "Unprocessable Content", detail, slug="unprocessable", **ext)


def too_many_requests(detail: str, retry_after_s: int, headers: dict[str, str]) -> ApiError:
    return ApiError(429, "Too Many Requests", detail, slug="rate-limited",
                    headers={"Retry-After": str(max(1, retry_after_s)), **headers})
