"""Small helpers every handler module uses to answer.

Handlers always set ``Content-Type`` explicitly: Connexion infers it from *all*
of an operation's responses, and with problem+json among them a plain dict
would be serialised as the wrong type (connexion #1956).
"""

from __future__ import annotations

from typing import Any

__all__ = ["json_response", "no_content"]

JSON = "application/json"


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> tuple[Any, int, dict[str, str]]:
    return body, status, {"Content-Type": JSON, **(headers or {})}


def no_content(headers: dict[str, str] | None = None) -> tuple[None, int, dict[str, str]]:
    return None, 204, dict(headers or {})
