"""The developer portal's static files, served at ``/`` on the API's own port and origin.

The portal (``portal/`` in the repository, built with esbuild into ``portal_static/``,
which is committed and shipped as package data) is a browser app on the generated
TypeScript SDK. This ASGI middleware answers ``GET``/``HEAD`` for ``/`` (the page) and
``/portal/<file>`` (its assets) from a fixed list read at start-up, so no path reaches the
file system and nothing is fetched at run time; every other request goes on to the API.
"""

from __future__ import annotations

import mimetypes
from importlib import resources
from typing import Any

__all__ = ["PORTAL_PREFIX", "PortalMiddleware", "portal_files"]

PORTAL_PREFIX = "/portal/"
_INDEX = "index.html"
_HEADERS_COMMON = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    # The portal loads only its own files and talks only to this origin.
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
]


def portal_files() -> dict[str, tuple[bytes, str]]:
    """URL path -> (bytes, content type) of the built portal; empty when it is not built."""
    root = resources.files("bitnet_sdk.server") / "portal_static"
    files: dict[str, tuple[bytes, str]] = {}
    if not root.is_dir():
        return files
    for entry in root.iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind == "application/javascript":
            kind += "; charset=utf-8"
        data = entry.read_bytes()
        files[PORTAL_PREFIX + entry.name] = (data, kind)
        if entry.name == _INDEX:
            files["/"] = (data, kind)
    return files


class PortalMiddleware:
    """Serve the portal's files; pass everything else to ``app`` unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.files = portal_files()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = None
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            found = self.files.get(scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        data, kind = found
        headers = [(b"content-type", kind.encode()),
                   (b"content-length", str(len(data)).encode()), *_HEADERS_COMMON]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else data
        await send({"type": "http.response.body", "body": body})
