"""Browser-facing security headers on every response; a strict CSP on the docs pages.

The API is JSON for programs, but browsers reach it too (the Swagger UI under
``…/docs``, a developer opening a URL, a page of some other site trying to frame or
sniff it). So every response carries:

* ``X-Content-Type-Options: nosniff``: a JSON or text body is never run as script or
  style because a browser guessed its type;
* ``Referrer-Policy: no-referrer``: URLs (with ids, cursors) do not leak to other sites;
* ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``: no page may frame ours
  (click-jacking the docs' "Try it out" with a victim's token);
* ``Content-Security-Policy``: ``default-src 'none'`` for everything but HTML; HTML pages
  (the Swagger UI) get a policy that lets exactly their own scripts run: files from this
  origin plus the page's inline scripts by SHA-256 hash, computed from the page as served
  (its inline bootstrap embeds the spec's URL, so the hash differs per API);
* ``Cache-Control: no-store`` on responses that carry credentials (``/auth/…`` tokens,
  API keys) unless the handler chose a policy itself.

:data:`BASE_HEADERS` is the one list; the Tornado layer (refusals, WebSocket
handshakes, the bridge's last-resort 500) sends the same.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "API_CSP",
    "BASE_HEADERS",
    "SecurityHeadersMiddleware",
    "html_csp",
]

#: The policy for anything that is not an HTML page: nothing may load, nothing may frame it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: Headers every response carries (``Content-Security-Policy`` is added per response).
BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
_NO_STORE = (b"cache-control", b"no-store")
#: Inline ``<script>`` elements (without ``src``) of an HTML page.
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>",
                            re.DOTALL | re.IGNORECASE)


def html_csp(page: bytes) -> str:
    """The policy for an HTML page of ours: own files, its inline scripts by hash, no framing.

    Swagger UI needs: its scripts and styles from this origin, its inline bootstrap
    script, inline styles (the page's ``<style>`` and React's style attributes),
    ``data:`` images (icons in its CSS), and requests to this origin (the spec, "Try it
    out"). Nothing else may load, submit forms elsewhere or change the base URL.
    """
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
        for m in _INLINE_SCRIPT.finditer(page)
    )
    return ("default-src 'none'; "
            f"script-src 'self'{' ' + hashes if hashes else ''}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


class SecurityHeadersMiddleware:
    """ASGI middleware adding the headers above to every HTTP response of ``app``.

    ``no_store_prefixes``: paths whose responses carry credentials. HTML responses are
    buffered (to hash their inline scripts; only the docs pages are HTML, and small);
    everything else streams through untouched but for its headers. A header the
    application set itself is kept.
    """

    def __init__(self, app: ASGIApp, *, no_store_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.no_store_prefixes = no_store_prefixes
        self._base = [(k.lower().encode(), v.encode()) for k, v in BASE_HEADERS]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(self._base)
        if str(scope.get("path", "")).startswith(self.no_store_prefixes):
            extra.append(_NO_STORE)
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in extra if h[0] not in present]
                message = {**message, "headers": headers}
                if _is_html(headers) and b"content-security-policy" not in present:
                    held = message  # the policy depends on the page: wait for it
                    return
                if b"content-security-policy" not in present:
                    message["headers"].append((b"content-security-policy", API_CSP.encode()))
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                page = b"".join(chunks)
                await send({**held, "headers": [*held["headers"], (
                    b"content-security-policy", html_csp(page).encode())]})
                message = {"type": "http.response.body", "body": page}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";")[0].strip().lower() == b"text/html"
    return False
