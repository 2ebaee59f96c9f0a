"""HTTP's rendering of :class:`~bitnet_sdk.service.errors.ApiError`: RFC 9457 problem+json.

Handlers and services raise ``ApiError``; :func:`install_error_handlers` makes
:func:`problem_response` its one renderer on HTTP, and turns everything else — a
decoding error in a request body, a bug — into a problem too, so no client ever
sees an HTML page or a bare 500 body. (Connexion renders the problems it raises
itself, validation and security, in the same shape.)

APIs that promise another error shape (the OpenAI-compatible one under
``/openai/``) get it from :class:`ProblemRenderer`: one ASGI middleware, outside
Connexion's exception middleware, that re-renders every problem response on
its path prefix, whoever raised the problem (validation, security, routing's
404/405, the rate limiter's 429, a handler, a bug).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse

from bitnet_sdk.service.errors import ApiError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ProblemRenderer",
    "install_error_handlers",
    "problem_response",
    "with_field_errors",
]

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_response(error: ApiError) -> ConnexionResponse:
    """``error`` as an HTTP response: its status, headers and problem body."""
    return ConnexionResponse(
        status_code=error.status,
        content_type=PROBLEM_MEDIA_TYPE,
        headers=error.headers,
        body=json.dumps(error.problem()),
    )


async def _api_error(request: ConnexionRequest, exc: ApiError) -> ConnexionResponse:
    (log.warning if exc.status < 500 else log.error)("%r", exc)
    return problem_response(exc)


async def _decode_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    # Invalid UTF-8 or JSON in a body that Connexion decodes before validation.
    return problem_response(ApiError(
        400, "Bad Request", f"Request body could not be decoded: {exc}", slug="validation",
        errors=[{"field": "body", "location": "body", "rule": "json",
                 "message": f"is not valid UTF-8 JSON ({exc})"}]))


async def _server_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    if isinstance(exc, ApiError):  # raised where the handler above did not see it
        return problem_response(exc)
    if isinstance(exc, ProblemException):  # raised where Connexion did not render it
        return problem_response(ApiError(exc.status, exc.title, exc.detail,
                                         headers=exc.headers))
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(ApiError(500, "Internal Server Error",
                                     "The server failed to handle this request.",
                                     slug="internal"))


def install_error_handlers(app: Any) -> None:
    """Register problem+json handlers for ``ApiError``, decoding errors and anything unexpected."""
    app.add_error_handler(ApiError, _api_error)
    app.add_error_handler(UnicodeDecodeError, _decode_error)
    app.add_error_handler(json.JSONDecodeError, _decode_error)
    app.add_error_handler(500, _server_error)
    app.add_error_handler(Exception, _server_error)


class ProblemRenderer:
    """ASGI middleware: under ``prefix``, problem+json responses re-rendered by ``render``.

    ``render(status, problem)`` returns the JSON body to send instead (with
    ``media_type``); status and other headers are kept. Add it with
    ``MiddlewarePosition.BEFORE_EXCEPTION`` after ``ContextMiddleware``, so it
    sees what Connexion's exception middleware rendered. Only problem bodies
    are buffered (they are small); every other response streams through.
    """

    def __init__(self, app: ASGIApp, prefix: str,
                 render: Callable[[int, dict[str, Any]], Any],
                 media_type: str = "application/json") -> None:
        self.app = app
        self.prefix = prefix
        self.render = render
        self.media_type = media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and _is_problem(message):
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                await self._send_rendered(held, b"".join(chunks), send)

        await self.app(scope, receive, send_wrapper)

    async def _send_rendered(self, start: Message, raw: bytes, send: Send) -> None:
        status = int(start["status"])
        try:
            problem = json.loads(raw) if raw else {}
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        body = json.dumps(self.render(status, problem)).encode()
        headers = [(k, v) for k, v in start.get("headers", [])
                   if k.lower() not in (b"content-type", b"content-length")]
        headers += [(b"content-type", self.media_type.encode()),
                    (b"content-length", str(len(body)).encode())]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def with_field_errors(status: int, problem: dict[str, Any]) -> dict[str, Any]:
    """``problem`` with ``errors[]``: every 400 names what was invalid.

    The server's validators (``server.validation``) and handlers list their fields; a 400
    Connexion still raises itself without them (an empty required body) gets one entry
    for the request body, in the detail's words.
    """
    if status != 400 or problem.get("errors") or problem.get("type", "about:blank") != "about:blank":
        return problem
    message = str(problem.get("detail") or problem.get("title") or "is invalid")
    return {**problem, "errors": [{"field": "body", "location": "body", "rule": "invalid",
                                   "message": message}]}


def _is_problem(start: Message) -> bool:
    # Connexion labels bodiless successes (204) with the operation's error media type
    # (connexion #1956): only error statuses carry problems.
    if int(start["status"]) < 400:
        return False
    for name, value in start.get("headers", []):
        if name.lower() == b"content-type":
            return value.split(b";")[0].strip().lower() == PROBLEM_MEDIA_TYPE.encode()
    return False
