"""The database: peewee models, connection from a URL, migrations.

SQLite (default, ``sqlite:///<data_dir>/bitnet.db``) or PostgreSQL
(``postgresql://…``), chosen by URL only. Importing this package opens
nothing; call :func:`connect` then :func:`migrate`.
"""

from __future__ import annotations

from bitnet_sdk.store.db import (
    advisory_lock,
    connect,
    database_proxy,
    is_postgres,
    is_sqlite,
    resolve,
    write_transaction,
)
from bitnet_sdk.store.fields import JSONField, UTCDateTimeField, utcnow
from bitnet_sdk.store.ids import new_id
from bitnet_sdk.store.migrate import current_version, migrate
from bitnet_sdk.store.models import (
    ALL_MODELS,
    ApiKey,
    Job,
    JobEvent,
    ModelRecord,
    RateLimitCounter,
    RateLimitHit,
    RefreshToken,
    RevokedToken,
    UpgradeRequest,
    UsageRecord,
    User,
    WebhookDelivery,
)

__all__ = [
    "ALL_MODELS",
    "ApiKey",
    "JSONField",
    "Job",
    "JobEvent",
    "ModelRecord",
    "RateLimitCounter",
    "RateLimitHit",
    "RefreshToken",
    "RevokedToken",
    "UTCDateTimeField",
    "UpgradeRequest",
    "UsageRecord",
    "User",
    "WebhookDelivery",
    "advisory_lock",
    "connect",
    "current_version",
    "database_proxy",
    "is_postgres",
    "is_sqlite",
    "migrate",
    "new_id",
    "resolve",
    "utcnow",
    "write_transaction",
]
