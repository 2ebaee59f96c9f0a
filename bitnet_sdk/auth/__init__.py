"""Accounts and security: passwords, access tokens, sessions, API keys, scopes, upgrades.

Pure functions over the store (:mod:`bitnet_sdk.store`); the HTTP handlers
call them and translate :mod:`~bitnet_sdk.auth.errors` into responses. Every
time-dependent function takes ``now`` (epoch seconds) for tests.
"""

from __future__ import annotations

from bitnet_sdk.auth.access import (
    claims_scopes,
    issue_access_token,
    prune_revoked,
    verify_access_token,
)
from bitnet_sdk.auth.api_keys import (
    api_key_info,
    api_key_query,
    create_api_key,
    get_api_key,
    list_api_keys,
    looks_like_api_key,
    revoke_api_key,
    verify_api_key,
)
from bitnet_sdk.auth.errors import (
    AccountDisabled,
    AuthError,
    EmailTaken,
    InvalidApiKey,
    InvalidCredentials,
    InvalidToken,
    NotFound,
    RefreshTokenReused,
    TokenExpired,
    TokenRevoked,
    UpgradeConflict,
    WeakPassword,
)
from bitnet_sdk.auth.scopes import SCOPE_DESCRIPTIONS, SCOPES, default_scopes
from bitnet_sdk.auth.sessions import (
    TokenPair,
    logout,
    refresh_session,
    revoke_user_sessions,
    start_session,
)
from bitnet_sdk.auth.upgrades import (
    approve_upgrade,
    list_upgrade_requests,
    reject_upgrade,
    request_upgrade,
    upgrade_request_query,
)
from bitnet_sdk.auth.users import (
    authenticate,
    create_user,
    ensure_admin,
    get_user,
    get_user_by_email,
    list_users,
    set_disabled,
    set_password,
    set_tier,
    user_query,
)

__all__ = [
    "SCOPES",
    "SCOPE_DESCRIPTIONS",
    "AccountDisabled",
    "AuthError",
    "EmailTaken",
    "InvalidApiKey",
    "InvalidCredentials",
    "InvalidToken",
    "NotFound",
    "RefreshTokenReused",
    "TokenExpired",
    "TokenPair",
    "TokenRevoked",
    "UpgradeConflict",
    "WeakPassword",
    "api_key_info",
    "api_key_query",
    "approve_upgrade",
    "authenticate",
    "claims_scopes",
    "create_api_key",
    "create_user",
    "default_scopes",
    "ensure_admin",
    "get_api_key",
    "get_user",
    "get_user_by_email",
    "issue_access_token",
    "list_api_keys",
    "list_upgrade_requests",
    "list_users",
    "logout",
    "looks_like_api_key",
    "prune_revoked",
    "refresh_session",
    "reject_upgrade",
    "request_upgrade",
    "revoke_api_key",
    "revoke_user_sessions",
    "set_disabled",
    "set_password",
    "set_tier",
    "start_session",
    "upgrade_request_query",
    "user_query",
    "verify_access_token",
    "verify_api_key",
]
