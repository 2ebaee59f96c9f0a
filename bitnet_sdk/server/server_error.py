"""The outermost error handler: a problem+json 500 for anything that escapes.

Connexion 3.3 subclasses Starlette's ``ServerErrorMiddleware`` with an *async*
``error_response``; Starlette ≥ 1.0 calls that method without awaiting it, so an
exception escaping Connexion's exception middleware (one raised by an outer
middleware, or after a streamed response has started) produced no response and
an un-awaited coroutine. This subclass answers synchronously, as Starlette
expects, with the same problem body as every other error.
"""

from __future__ import annotations

import json
import logging

from connexion.middleware.main import ConnexionMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware as _ConnexionServerError
from starlette.requests import Request
from starlette.responses import Response

from bitnet_sdk.server.asgi.security_headers import API_CSP, BASE_HEADERS
from bitnet_sdk.server.problems import PROBLEM_MEDIA_TYPE
from bitnet_sdk.service.errors import ApiError

__all__ = ["ServerErrorMiddleware", "middlewares"]

log = logging.getLogger(__name__)


class ServerErrorMiddleware(_ConnexionServerError):
    def error_response(self, request: Request, exc: Exception) -> Response:
        log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        error = ApiError(500, "Internal Server Error", "The server failed to handle this request.",
                         slug="internal")
        return Response(json.dumps(error.problem()), error.status, media_type=PROBLEM_MEDIA_TYPE,
                        headers={**dict(BASE_HEADERS), "Content-Security-Policy": API_CSP})


def middlewares() -> list[type]:
    """Connexion's default middleware stack with the error handler above in its place.

    A new list per app: Connexion's ``add_middleware`` inserts into the list it was given.
    """
    return [
        ServerErrorMiddleware if m is _ConnexionServerError else m
        for m in ConnexionMiddleware.default_middlewares
    ]
