"""``GET /``: a person who opens the server's address lands on the API docs, not a JSON 404."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DOCS_PATH", "RootRedirect"]

#: Where ``/`` sends a browser: the Swagger UI of the native API (served offline).
DOCS_PATH = "/v1/docs/"


class RootRedirect:
    """ASGI middleware: ``GET``/``HEAD /`` answer ``302`` to :data:`DOCS_PATH`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 302,
                        "headers": [(b"location", DOCS_PATH.encode()),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)
