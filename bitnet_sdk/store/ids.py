"""Public identifiers: a short type prefix and 128 random bits (``usr_…``, ``mdl_…``).

The prefix tells a reader (and a support engineer reading logs) what kind of
object an id names; the random part is unguessable, so ids can be shown to
users without leaking counts or creation order.
"""

from __future__ import annotations

import secrets

__all__ = ["PREFIXES", "new_id", "random_token"]

#: Prefix of each kind of record id.
PREFIXES = {
    "user": "usr",
    "api_key": "key",
    "model": "mdl",
    "job": "job",
    "upgrade": "upg",
    "refresh_family": "fam",
}

# Lowercase letters and digits without look-alikes (0/o, 1/l/i): ids are read aloud and typed.
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
_ID_CHARS = 26  # 31**26 ≈ 2**128


def random_token(n_chars: int = _ID_CHARS) -> str:
    """``n_chars`` characters from an unambiguous lowercase alphabet, from ``secrets``."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(n_chars))


def new_id(prefix: str) -> str:
    """A fresh id such as ``usr_k3m…`` (``prefix`` is given without the underscore)."""
    return f"{prefix}_{random_token()}"
