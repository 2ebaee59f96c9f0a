"""API keys: long-lived credentials for programs, shown once, stored hashed.

A key reads ``bn_<id>_<secret>``: ``bn_<id>`` is the *prefix*, stored in
clear and shown in lists so people can tell keys apart; it is also the
lookup key. The secret (256 random bits) is stored as a peppered HMAC
(:mod:`bitnet_sdk.auth.crypto`) and compared in constant time. The record id
is ``key_<id>``.

A key's effective scopes are its own scopes intersected with its owner's
*current* scopes, so taking a scope from a user takes it from their keys.
Disabled owners, revoked and expired keys are refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import peewee

from bitnet_sdk.auth.crypto import hash_secret, secrets_equal, server_pepper
from bitnet_sdk.auth.errors import AccountDisabled, InvalidApiKey, NotFound
from bitnet_sdk.auth.scopes import validate_scopes
from bitnet_sdk.config import Settings
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.ids import random_token
from bitnet_sdk.store.models import ApiKey, User

__all__ = [
    "KEY_PREFIX",
    "api_key_info",
    "api_key_query",
    "create_api_key",
    "get_api_key",
    "key_id_of",
    "list_api_keys",
    "looks_like_api_key",
    "revoke_api_key",
    "verify_api_key",
]

KEY_PREFIX = "bn_"
_ID_CHARS = 16
#: ``last_used_at`` is written at most this often per key (saves a write per request).
_TOUCH_INTERVAL = timedelta(seconds=60)


def looks_like_api_key(value: str) -> bool:
    """Whether ``value`` has the shape of an API key (for choosing the auth scheme)."""
    return value.startswith(KEY_PREFIX) and value.count("_") >= 2


def key_id_of(key: str) -> str:
    """The record id (``key_<id>``) a key names; only meaningful for a verified key."""
    return "key_" + key[len(KEY_PREFIX) : len(KEY_PREFIX) + _ID_CHARS]


def create_api_key(
    user: User,
    name: str,
    scopes: Iterable[str] | None,
    settings: Settings,
    *,
    expires_at: datetime | None = None,
    now: float | None = None,
) -> tuple[ApiKey, str]:
    """``(record, full_key)``; the full key exists only in this return value.

    ``scopes=None`` grants all of the user's scopes. Asking for a scope the
    user lacks raises ``ValueError``.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("key name must have 1 to 200 characters")
    granted = validate_scopes(user.scopes if scopes is None else scopes)
    missing = sorted(set(granted) - set(user.scopes))
    if missing:
        raise ValueError(f"user does not hold scopes: {', '.join(missing)}")
    ident, secret = random_token(_ID_CHARS), secrets.token_urlsafe(32)
    record = ApiKey.create(
        id=f"key_{ident}",
        user=user.id,
        name=name,
        prefix=f"{KEY_PREFIX}{ident}",
        secret_hash=hash_secret(secret, server_pepper(settings)),
        scopes=granted,
        created_at=utcnow(now),
        expires_at=expires_at,
    )
    return record, f"{KEY_PREFIX}{ident}_{secret}"


def verify_api_key(key: str, settings: Settings, *, now: float | None = None) -> tuple[User, list[str]]:
    """``(owner, effective_scopes)`` for a valid key; :class:`InvalidApiKey` otherwise."""
    pepper = server_pepper(settings)
    # The id part has a fixed length; the secret (token_urlsafe) may itself contain "_".
    prefix_len = len(KEY_PREFIX) + _ID_CHARS
    prefix, sep, secret = key[:prefix_len], key[prefix_len : prefix_len + 1], key[prefix_len + 1 :]
    well_formed = key.startswith(KEY_PREFIX) and sep == "_" and bool(secret) and len(key) <= 256
    record = ApiKey.get_or_none(ApiKey.prefix == prefix) if well_formed else None
    # Hash even when the prefix is unknown so timing does not reveal which prefixes exist.
    actual = hash_secret(secret, pepper)
    if record is None or not secrets_equal(record.secret_hash, actual):
        raise InvalidApiKey("invalid API key")
    current = utcnow(now)
    if record.revoked_at is not None:
        raise InvalidApiKey("API key revoked")
    if record.expires_at is not None and record.expires_at <= current:
        raise InvalidApiKey("API key expired")
    user = User.get_by_id(record.user_id)
    if user.disabled:
        raise AccountDisabled("account is disabled")
    if record.last_used_at is None or current - record.last_used_at >= _TOUCH_INTERVAL:
        ApiKey.update(last_used_at=current).where(ApiKey.id == record.id).execute()
    held = set(user.scopes)
    return user, [s for s in record.scopes if s in held]


def api_key_info(record: ApiKey) -> dict[str, Any]:
    """The fields of a key that may be shown (never the hash), datetimes as ISO 8601."""

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "scopes": list(record.scopes),
        "created_at": iso(record.created_at),
        "last_used_at": iso(record.last_used_at),
        "expires_at": iso(record.expires_at),
        "revoked_at": iso(record.revoked_at),
    }


def api_key_query(user: User | str, *, include_revoked: bool = False) -> peewee.ModelSelect:
    """The user's keys as an unordered query (for pagination); active ones unless told."""
    user_id = user if isinstance(user, str) else user.id
    query = ApiKey.select().where(ApiKey.user == user_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_null())
    return query


def get_api_key(key_id: str, *, user: User | str | None = None) -> ApiKey | None:
    """The key record ``key_id`` (only among ``user``'s keys when given), revoked or not."""
    query = ApiKey.select().where(ApiKey.id == key_id)
    if user is not None:
        query = query.where(ApiKey.user == (user if isinstance(user, str) else user.id))
    return query.first()


def list_api_keys(user: User, *, include_revoked: bool = False) -> list[ApiKey]:
    """The user's keys, newest first (records hold the prefix, never the secret)."""
    query = api_key_query(user, include_revoked=include_revoked)
    return list(query.order_by(ApiKey.created_at.desc(), ApiKey.id))


def revoke_api_key(key_id: str, *, user: User | None = None, now: float | None = None) -> ApiKey:
    """Revoke ``key_id`` (only among ``user``'s keys when given); idempotent.

    Raises :class:`NotFound` when no such key (or not the user's).
    """
    query = ApiKey.select().where(ApiKey.id == key_id)
    if user is not None:
        query = query.where(ApiKey.user == user.id)
    record = query.first()
    if record is None:
        raise NotFound(f"no API key {key_id}")
    if record.revoked_at is None:
        record.revoked_at = utcnow(now)
        ApiKey.update(revoked_at=record.revoked_at).where(
            ApiKey.id == record.id, ApiKey.revoked_at.is_null()
        ).execute()
    return record
