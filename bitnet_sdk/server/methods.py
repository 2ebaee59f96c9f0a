"""``405 Method Not Allowed`` with an ``Allow`` header that lists every method of the resource.

Connexion routes each (path, method) pair as its own Starlette route; a request
with a method the path lacks gets the ``Allow`` of whichever route matched
first, e.g. ``Allow: GET`` for ``/models`` although it also takes ``POST``.
RFC 9110 §15.5.6 asks for the resource's full list, so the handler installed
here answers from the spec: the methods of the most specific path template
(static segments before parameters) that matches the request path.
"""

from __future__ import annotations

import re
from typing import Any

from connexion.lifecycle import ConnexionRequest, ConnexionResponse

from bitnet_sdk.server.problems import problem_response
from bitnet_sdk.service.errors import ApiError

__all__ = ["AllowedMethods", "install_method_not_allowed"]

_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM = re.compile(r"\{[^}/]+\}")


class AllowedMethods:
    """Path templates of a spec, most specific first, with their methods."""

    def __init__(self, spec: dict[str, Any], base_path: str = "") -> None:
        entries = []
        for template, item in spec.get("paths", {}).items():
            methods = [m.upper() for m in _HTTP_METHODS if m in item]
            pattern = "".join(
                "[^/]+" if _PARAM.fullmatch(part) else re.escape(part)
                for part in re.split(r"(\{[^}/]+\})", base_path + template) if part
            )
            entries.append((len(_PARAM.findall(template)), re.compile(pattern), methods))
        entries.sort(key=lambda e: e[0])
        self._entries = [(regex, methods) for _, regex, methods in entries]

    def for_path(self, path: str) -> list[str] | None:
        """Methods of the resource at ``path``, or None when no template matches."""
        for regex, methods in self._entries:
            if regex.fullmatch(path):
                return methods
        return None


def install_method_not_allowed(app: Any, spec: dict[str, Any], base_path: str) -> None:
    """Answer every 405 as problem+json with the resource's full ``Allow`` list."""
    allowed = AllowedMethods(spec, base_path)

    async def method_not_allowed(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        methods = allowed.for_path(request.url.path)
        if methods is None:  # not one of ours: keep what the router said
            allow = (getattr(exc, "headers", None) or {}).get("Allow", "")
        else:
            allow = ", ".join(methods)
        return problem_response(ApiError(
            405, "Method Not Allowed", f"{request.method} is not allowed here; allowed: {allow}.",
            headers={"Allow": allow}))

    app.add_error_handler(405, method_not_allowed)
