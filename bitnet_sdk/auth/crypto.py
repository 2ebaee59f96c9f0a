"""Hashing of high-entropy secrets (API keys, refresh tokens) with a server pepper.

Such secrets carry 256 random bits, so a slow password hash buys nothing:
HMAC-SHA256 keyed with a pepper derived from the server secret is enough, and
a stolen database alone cannot be used to check guesses. Comparisons are
constant-time.

The pepper is derived from ``Settings.secret()`` (the JWT secret): rotating
that secret invalidates all API keys and refresh tokens along with the access
tokens.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bitnet_sdk.config import Settings

__all__ = ["hash_secret", "secrets_equal", "server_pepper"]

_PEPPER_LABEL = b"bitnet-sdk secret-hash pepper v1"


def server_pepper(settings: Settings) -> bytes:
    """32-byte pepper, domain-separated from the JWT signing key itself."""
    return hmac.new(settings.secret().encode(), _PEPPER_LABEL, hashlib.sha256).digest()


def hash_secret(secret: str, pepper: bytes) -> str:
    """Hex HMAC-SHA256 of ``secret``."""
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def secrets_equal(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())
