"""OAuth-style scopes: what a token or API key may do.

A user holds a list of scopes (by default those of their tier, plus
``admin`` and ``metrics`` for administrators); tokens and API keys carry a
subset. Scopes travel as one space-separated string (the JWT ``scope`` claim,
RFC 8693 / RFC 9068 style).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ADMIN_ONLY_SCOPES",
    "SCOPES",
    "SCOPE_DESCRIPTIONS",
    "TIER_SCOPES",
    "default_scopes",
    "format_scope",
    "parse_scope",
    "validate_scopes",
]

SCOPE_DESCRIPTIONS: dict[str, str] = {
    "models:read": "List, inspect and download models",
    "models:write": "Upload, edit and delete own models",
    "quantize": "Submit and manage quantization jobs",
    "inference": "Run inference on models",
    "account": "Manage own account, API keys and usage",
    "admin": "Administer users, tiers and upgrade requests",
    "metrics": "Read service metrics",
}
SCOPES: tuple[str, ...] = tuple(SCOPE_DESCRIPTIONS)
ADMIN_ONLY_SCOPES: tuple[str, ...] = ("admin", "metrics")

_CUSTOMER = ("models:read", "models:write", "quantize", "inference", "account")
#: Scopes each tier grants; tiers differ by limits (``Settings.tiers``), not by features.
TIER_SCOPES: dict[str, tuple[str, ...]] = {
    "developer": _CUSTOMER,
    "team": _CUSTOMER,
    "enterprise": _CUSTOMER,
}


def default_scopes(tier: str, is_admin: bool = False) -> list[str]:
    """Scopes a new account of ``tier`` gets (unknown tiers get the customer set)."""
    granted = list(TIER_SCOPES.get(tier, _CUSTOMER))
    if is_admin:
        granted += [s for s in ADMIN_ONLY_SCOPES if s not in granted]
    return granted


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Deduplicated list in canonical order; ``ValueError`` naming unknown scopes."""
    wanted = set(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    return [s for s in SCOPES if s in wanted]


def parse_scope(value: str | None) -> list[str]:
    """Split a space-separated scope string (no validation)."""
    return [part for part in (value or "").split(" ") if part]


def format_scope(scopes: Iterable[str]) -> str:
    return " ".join(scopes)
