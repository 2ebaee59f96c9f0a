"""CORS: which web origins may call the API from a browser, and what they may send and read.

None by default (``Settings.cors_origins`` empty: no CORS headers at all, so browsers keep
other sites' pages out). Operators list origins with ``BITNET_CORS_ORIGINS`` (comma
separated) or ``bitnet serve --cors-origin`` (both checked by ``config.parse_origins``);
``*`` allows any origin. Credentials travel
in ``Authorization`` / ``X-API-Key`` headers, never cookies, so responses never say
``Access-Control-Allow-Credentials``: a wildcard origin can therefore never be combined
with credentials mode. Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are
answered here, before routing, security and rate limits, for ``/v1`` and ``/openai/v1``
alike. WebSockets are not subject to CORS (browsers do not preflight them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALLOW_HEADERS", "EXPOSE_HEADERS", "cors_options"]

#: Request headers a page may send (beyond the CORS-safelisted ones).
ALLOW_HEADERS = ("Authorization", "X-API-Key", "Idempotency-Key", "Content-Type", "X-Request-ID",
                 "Range", "If-None-Match", "Last-Event-ID")
#: Response headers a page may read (beyond the CORS-safelisted ones).
EXPOSE_HEADERS = ("RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-ID", "Location",
                  "ETag", "Content-Range", "Content-Disposition", "Accept-Ranges", "Content-Length")
ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
#: How long a browser may cache a preflight answer (seconds).
MAX_AGE = 600


def cors_options(origins: tuple[str, ...]) -> dict[str, Any]:
    """Keyword arguments for Starlette's ``CORSMiddleware``."""
    return {"allow_origins": list(origins), "allow_methods": list(ALLOW_METHODS),
            "allow_headers": list(ALLOW_HEADERS), "expose_headers": list(EXPOSE_HEADERS),
            "allow_credentials": False, "max_age": MAX_AGE}
