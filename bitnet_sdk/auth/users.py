"""Accounts: creation, password login, tier changes and the first administrator.

Emails are compared lower-cased (stored that way). Password hashing is slow
by design; call these from an executor in async code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import peewee
from argon2 import PasswordHasher

from bitnet_sdk.auth.errors import AccountDisabled, EmailTaken, InvalidCredentials
from bitnet_sdk.auth.passwords import (
    check_password_policy,
    dummy_verify,
    generate_password,
    hash_password,
    verify_password,
)
from bitnet_sdk.auth.scopes import default_scopes, validate_scopes
from bitnet_sdk.config import DEFAULT_TIERS, Settings
from bitnet_sdk.store.db import write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.models import User

__all__ = [
    "ADMIN_EMAIL",
    "authenticate",
    "create_user",
    "ensure_admin",
    "get_user",
    "get_user_by_email",
    "known_tiers",
    "list_users",
    "normalize_email",
    "set_disabled",
    "set_password",
    "set_tier",
    "user_query",
]

log = logging.getLogger(__name__)

#: Email of the administrator created at first start.
ADMIN_EMAIL = "admin@localhost"


def normalize_email(email: str) -> str:
    """Trimmed, lower-cased address; ``ValueError`` unless it looks like ``local@domain``."""
    value = email.strip().lower()
    local, sep, domain = value.partition("@")
    if not sep or not local or not domain or "@" in domain or len(value) > 320 or " " in value:
        raise ValueError(f"not an email address: {email!r}")
    return value


def known_tiers(settings: Settings | None = None) -> list[str]:
    return list((settings.tiers if settings else DEFAULT_TIERS).keys())


def _check_tier(tier: str, settings: Settings | None) -> None:
    tiers = known_tiers(settings)
    if tier not in tiers:
        raise ValueError(f"unknown tier {tier!r} (known: {', '.join(tiers)})")


def create_user(
    email: str,
    password: str | None = None,
    *,
    tier: str = "developer",
    scopes: Iterable[str] | None = None,
    is_admin: bool = False,
    settings: Settings | None = None,
    hasher: PasswordHasher | None = None,
    now: float | None = None,
) -> User:
    """Create an account; ``password=None`` makes one that can only use API keys.

    ``scopes`` defaults to the tier's (plus the admin scopes for admins).
    Raises :class:`EmailTaken`, :class:`WeakPassword` or ``ValueError`` (bad
    email, tier or scope).
    """
    address = normalize_email(email)
    _check_tier(tier, settings)
    granted = validate_scopes(default_scopes(tier, is_admin) if scopes is None else scopes)
    password_hash = None
    if password is not None:
        check_password_policy(password)
        password_hash = hash_password(password, hasher)
    try:
        with write_transaction():
            return User.create(
                email=address,
                password_hash=password_hash,
                tier=tier,
                scopes=granted,
                is_admin=is_admin,
                created_at=utcnow(now),
            )
    except peewee.IntegrityError as exc:
        raise EmailTaken(f"an account with email {address} already exists") from exc


def get_user(user_id: str) -> User | None:
    return User.get_or_none(User.id == user_id)


def get_user_by_email(email: str) -> User | None:
    try:
        address = normalize_email(email)
    except ValueError:
        return None
    return User.get_or_none(User.email == address)


def list_users(*, limit: int = 100, offset: int = 0) -> list[User]:
    """Accounts in creation order."""
    query = User.select().order_by(User.created_at, User.id).limit(limit).offset(offset)
    return list(query)


def user_query(
    *, email_contains: str | None = None, tier: str | None = None, disabled: bool | None = None
) -> peewee.ModelSelect:
    """Accounts matching every filter given (unordered, for :func:`paginate`).

    ``email_contains`` matches case-insensitively, its ``%`` and ``_`` literally.
    """
    query = User.select()
    if email_contains is not None:
        query = query.where(User.email.contains(email_contains.lower()))
    if tier is not None:
        query = query.where(User.tier == tier)
    if disabled is not None:
        query = query.where(User.disabled == disabled)
    return query


def authenticate(
    email: str, password: str, *, hasher: PasswordHasher | None = None, now: float | None = None
) -> User:
    """The account for ``email`` if ``password`` matches, else :class:`InvalidCredentials`.

    Unknown emails cost the same time as wrong passwords. A disabled account
    is reported (:class:`AccountDisabled`) only once the password is proven.
    When the hasher's parameters changed since the hash was made, the hash is
    replaced. Failed-login throttling is the caller's job
    (:class:`bitnet_sdk.service.accounting.login_throttle.LoginThrottle`).
    """
    user = get_user_by_email(email)
    if user is None or user.password_hash is None:
        dummy_verify(password, hasher)
        raise InvalidCredentials("invalid email or password")
    ok, needs_rehash = verify_password(user.password_hash, password, hasher)
    if not ok:
        raise InvalidCredentials("invalid email or password")
    if user.disabled:
        raise AccountDisabled("account is disabled")
    changes: dict[object, object] = {User.last_login_at: utcnow(now)}
    if needs_rehash:
        log.info("rehashing password of %s with current parameters", user.id)
        changes[User.password_hash] = hash_password(password, hasher)
    User.update(changes).where(User.id == user.id).execute()
    return User.get_by_id(user.id)


def set_password(user: User, password: str, *, hasher: PasswordHasher | None = None) -> None:
    check_password_policy(password)
    new_hash = hash_password(password, hasher)
    User.update(password_hash=new_hash).where(User.id == user.id).execute()
    user.password_hash = new_hash


def set_tier(user: User, tier: str, *, settings: Settings | None = None) -> None:
    """Move ``user`` to ``tier``; scopes become the new tier's defaults."""
    _check_tier(tier, settings)
    scopes = default_scopes(tier, user.is_admin)
    User.update(tier=tier, scopes=scopes).where(User.id == user.id).execute()
    user.tier, user.scopes = tier, scopes


def set_disabled(user: User, disabled: bool) -> None:
    """Disable (or re-enable) an account; its API keys and refresh tokens stop working."""
    User.update(disabled=disabled).where(User.id == user.id).execute()
    user.disabled = disabled


def ensure_admin(
    settings: Settings,
    *,
    email: str = ADMIN_EMAIL,
    hasher: PasswordHasher | None = None,
    now: float | None = None,
) -> tuple[str, str] | None:
    """Create the first administrator when the store has none.

    Returns ``(email, password)`` exactly once, for the caller to print; the
    password is random and not stored in clear anywhere. Returns ``None`` when
    an administrator exists (also when another process created one first).
    """
    if User.select().where(User.is_admin == True).exists():  # noqa: E712 (SQL expression)
        return None
    password = generate_password()
    tier = "enterprise" if "enterprise" in settings.tiers else known_tiers(settings)[0]
    try:
        create_user(
            email, password, tier=tier, is_admin=True, settings=settings, hasher=hasher, now=now
        )
    except EmailTaken:
        return None
    log.info("created administrator account %s", email)
    return normalize_email(email), password
