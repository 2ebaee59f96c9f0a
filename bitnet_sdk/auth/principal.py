"""Who is asking: the one principal type, and the one reading of a credential's scopes.

Every layer that acts for someone (the model registry, inference, jobs, the handlers and the
WebSocket) takes a :class:`Principal`, built from Connexion's ``token_info`` (what
:func:`bitnet_sdk.auth.credentials.resolve_credentials` returns) by
:meth:`Principal.from_token_info`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Principal", "token_scopes"]


def token_scopes(token_info: Mapping[str, Any]) -> list[str]:
    """The scopes a verified credential holds, in its order (``scope`` is space-separated)."""
    return str(token_info.get("scope") or "").split()


@dataclass(frozen=True)
class Principal:
    """A user id (None for the server itself), their tier, and whether they administer."""

    user_id: str | None
    tier: str = "developer"
    is_admin: bool = False

    @property
    def subject(self) -> str:
        """The user id, where only a user can be asking (inference, jobs, usage)."""
        if self.user_id is None:
            raise ValueError("the server itself is not a user")
        return self.user_id

    @classmethod
    def from_token_info(cls, token_info: Mapping[str, Any]) -> Principal:
        return cls(str(token_info["sub"]), str(token_info.get("tier") or "developer"),
                   "admin" in token_scopes(token_info))
