"""Exceptions of the accounts/security core; each maps to one HTTP answer.

Handlers translate them (``status`` is the suggested HTTP status) and must not
add detail that helps an attacker: a wrong password and an unknown email are
the same :class:`InvalidCredentials`.
"""

from __future__ import annotations

__all__ = [
    "AccountDisabled",
    "AuthError",
    "EmailTaken",
    "InvalidApiKey",
    "InvalidCredentials",
    "InvalidToken",
    "NotFound",
    "RefreshTokenReused",
    "TokenExpired",
    "TokenRevoked",
    "UpgradeConflict",
    "WeakPassword",
]


class AuthError(Exception):
    """Base class; ``status`` is the HTTP status a handler should answer with."""

    status = 401


class InvalidCredentials(AuthError):
    """Unknown email or wrong password (deliberately not told apart)."""


class AccountDisabled(AuthError):
    status = 403


class EmailTaken(AuthError):
    status = 409


class WeakPassword(AuthError, ValueError):
    status = 400


class InvalidToken(AuthError):
    """Malformed, badly signed or otherwise unacceptable token."""


class TokenExpired(InvalidToken):
    pass


class TokenRevoked(InvalidToken):
    pass


class RefreshTokenReused(TokenRevoked):
    """An already rotated refresh token came back: its whole family is now revoked."""


class InvalidApiKey(AuthError):
    pass


class NotFound(AuthError, LookupError):
    status = 404


class UpgradeConflict(AuthError):
    """The upgrade request cannot be made or decided in its current state."""

    status = 409
