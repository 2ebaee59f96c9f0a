"""Password hashing with Argon2id (argon2-cffi).

The hasher is injectable everywhere passwords are handled: production uses
argon2-cffi's defaults (RFC 9106 low-memory profile), tests pass a cheap one.
:func:`verify_password` reports whether the stored hash should be upgraded
because the parameters changed, so logins migrate hashes transparently.
Hashing is slow on purpose; server handlers call these from an executor.
"""

from __future__ import annotations

import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bitnet_sdk.auth.errors import WeakPassword

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "check_password_policy",
    "default_hasher",
    "dummy_verify",
    "generate_password",
    "hash_password",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 8
#: Bounds the work an attacker can cause per login attempt.
MAX_PASSWORD_LENGTH = 1024

_default = PasswordHasher()
_dummy_hashes: dict[tuple[object, ...], str] = {}
_dummy_lock = threading.Lock()


def default_hasher() -> PasswordHasher:
    """The production hasher (argon2-cffi defaults)."""
    return _default


def check_password_policy(password: str) -> None:
    """Raise :class:`~bitnet_sdk.auth.errors.WeakPassword` for too short/long passwords."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"password must have at most {MAX_PASSWORD_LENGTH} characters")


def generate_password() -> str:
    """A random password (about 190 bits) for generated accounts."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    return (hasher or _default).hash(password)


def verify_password(
    stored_hash: str, password: str, hasher: PasswordHasher | None = None
) -> tuple[bool, bool]:
    """``(matches, needs_rehash)``; never raises for a wrong password or a malformed hash."""
    h = hasher or _default
    try:
        h.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return True, h.check_needs_rehash(stored_hash)


def dummy_verify(password: str, hasher: PasswordHasher | None = None) -> None:
    """Spend the time of a real verification (for unknown accounts: no timing oracle)."""
    h = hasher or _default
    key = (h.time_cost, h.memory_cost, h.parallelism, h.hash_len, h.salt_len, h.type)
    with _dummy_lock:
        dummy = _dummy_hashes.get(key)
        if dummy is None:
            dummy = _dummy_hashes[key] = h.hash(secrets.token_urlsafe(16))
    verify_password(dummy, password, h)
