"""What a request's access log line says beyond method, path, status and latency.

The Tornado bridge gives each request a dict (scope key
:data:`~bitnet_sdk.server.asgi.bridge.ACCESS_LOG_KEY`) and writes the access line from it when
the response ends (``tornado_app``). The middlewares note what they learn as the request
passes: the request id (``ContextMiddleware``), the operation (``RouteRecorder``) and, after
security, the user id (:class:`AccessNoter`, which also binds the user id to every log line
of the request). Never a token, key or password: only ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bitnet_sdk.server.asgi.bridge import ACCESS_LOG_KEY
from bitnet_sdk.service import log_context

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["AccessNoter", "note", "user_id"]


def note(scope: Scope, **fields: Any) -> None:
    """Add ``fields`` to the request's access line (no-op outside the Tornado bridge)."""
    slot = scope.get(ACCESS_LOG_KEY)
    if isinstance(slot, dict):
        slot.update({k: v for k, v in fields.items() if v is not None})


def user_id(scope: Scope) -> str | None:
    """The verified user's id (Connexion's ``token_info.sub``), once security has run."""
    context = (scope.get("extensions") or {}).get("connexion_context") or {}
    info = context.get("token_info")
    sub = info.get("sub") if isinstance(info, dict) else None
    return sub if isinstance(sub, str) else None


class AccessNoter:
    """After security: note the user id for the access line and bind it to the request's logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        uid = user_id(scope) if scope["type"] == "http" else None
        if uid is None:
            await self.app(scope, receive, send)
            return
        note(scope, user_id=uid)
        token = log_context.bind(user_id=uid)
        try:
            await self.app(scope, receive, send)
        finally:
            log_context.unbind(token)
