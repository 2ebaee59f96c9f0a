"""JSON body limits, by operation: applied by ``BodyLimitMiddleware`` before validation.

Connexion validates JSON bodies on the event loop, tensor numbers at about 4 ms per KiB on a
loaded 2-core machine: every other request waits meanwhile. So bodies are bounded (413) before
they reach validation.
"""

from __future__ import annotations

from starlette.types import Scope

__all__ = ["DEFAULT_JSON_LIMIT", "INFERENCE_JSON_LIMIT", "json_body_limit"]

#: Largest JSON body of ``POST /inference`` and ``/inference/stream`` (413 above). 128 KiB is
#: still more prompt than any context window holds, or some 30,000 numbers of dense input.
INFERENCE_JSON_LIMIT = 128 << 10
#: Largest JSON body of every other operation (batches of requests: about 2 s of validation).
DEFAULT_JSON_LIMIT = 512 << 10
_SINGLE_REQUEST_PATHS = frozenset({"/v1/inference", "/v1/inference/stream"})


def json_body_limit(scope: Scope) -> int:
    """Body limit for ``BodyLimitMiddleware`` on ``application/json`` requests."""
    path = str(scope.get("path", "")).rstrip("/")
    return INFERENCE_JSON_LIMIT if path in _SINGLE_REQUEST_PATHS else DEFAULT_JSON_LIMIT
