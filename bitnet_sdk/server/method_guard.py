"""405 for a method the request's own resource lacks, before a templated sibling can take it.

Starlette routes ``GET /v1/quantize/batch`` to ``GET /v1/quantize/{job_id}`` (a path parameter
matches any segment), where validation then answers 400 for a job id ``batch``; the resource
``/quantize/batch`` has no ``GET``, so the right answer is 405 (RFC 9110 §15.5.6). This
middleware, placed before routing, looks the path up with
:class:`~bitnet_sdk.server.methods.AllowedMethods` (the most specific template wins: static
segments before parameters) and raises the 405 that the handler installed by
:func:`~bitnet_sdk.server.methods.install_method_not_allowed` renders with the full ``Allow``
list. Paths the spec does not know, and ``HEAD`` where ``GET`` is allowed, pass through.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from bitnet_sdk.server.methods import AllowedMethods

__all__ = ["UndeclaredMethodGuard"]


class UndeclaredMethodGuard:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, spec: dict[str, Any], base_path: str) -> None:
        self.app = app
        self.allowed = AllowedMethods(spec, base_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            methods = self.allowed.for_path(scope["path"])
            method = scope["method"]
            if methods is not None and method not in methods and not (
                    method == "HEAD" and "GET" in methods):
                raise HTTPException(405, headers={"Allow": ", ".join(methods)})
        await self.app(scope, receive, send)
