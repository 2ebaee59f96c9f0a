"""The tables of the service, as peewee models bound to :data:`~bitnet_sdk.store.db.database_proxy`.

These classes describe the schema *as of the latest migration*; the tables are
created and altered only by :mod:`bitnet_sdk.store.migrations` (a test checks
that the two agree). Timestamps are aware UTC (:class:`UTCDateTimeField`);
JSON columns are text (:class:`JSONField`). Ids are prefixed random strings
(:func:`~bitnet_sdk.store.ids.new_id`) except for high-volume append-only
tables, which use integer keys.

Value sets are given as tuples below (``JOB_STATUSES`` …); the database does
not enforce them, the services do.
"""

from __future__ import annotations

from functools import partial

import peewee

from bitnet_sdk.store.db import database_proxy
from bitnet_sdk.store.fields import JSONField, UTCDateTimeField, utcnow
from bitnet_sdk.store.ids import new_id

__all__ = [
    "ALL_MODELS",
    "JOB_KINDS",
    "JOB_STATUSES",
    "MODEL_KINDS",
    "MODEL_STATUSES",
    "UPGRADE_STATUSES",
    "WEBHOOK_STATUSES",
    "ApiKey",
    "BaseModel",
    "Job",
    "JobEvent",
    "LiveSocket",
    "ModelRecord",
    "QuotaReservation",
    "RateLimitCounter",
    "RateLimitHit",
    "RefreshToken",
    "RevokedToken",
    "StreamCancel",
    "UpgradeRequest",
    "UsageRecord",
    "User",
    "WebhookDelivery",
]

MODEL_KINDS = ("llm", "dense")
MODEL_STATUSES = ("pending_upload", "ready", "invalid", "deleting")
JOB_KINDS = ("quantize", "inference_batch")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
UPGRADE_STATUSES = ("pending", "approved", "rejected")
WEBHOOK_STATUSES = ("pending", "delivered", "failed")


def _now() -> object:
    return utcnow()


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy


class User(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40, default=partial(new_id, "usr"))
    #: Stored lower-cased (see ``bitnet_sdk.auth.users.normalize_email``).
    email = peewee.CharField(max_length=320, unique=True)
    #: Argon2id PHC string; NULL for accounts that cannot log in with a password.
    password_hash = peewee.TextField(null=True)
    tier = peewee.CharField(max_length=32, default="developer")
    #: List of scope strings granted to the account.
    scopes = JSONField(default=list)
    is_admin = peewee.BooleanField(default=False)
    disabled = peewee.BooleanField(default=False)
    created_at = UTCDateTimeField(default=_now)
    last_login_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "users"


class ApiKey(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    user = peewee.ForeignKeyField(User, backref="api_keys", on_delete="CASCADE")
    name = peewee.CharField(max_length=200)
    #: The public start of the key (``bn_<id part>``): shown in lists, used for lookup.
    prefix = peewee.CharField(max_length=64, unique=True)
    #: HMAC-SHA256 of the secret part with the server pepper, hex.
    secret_hash = peewee.CharField(max_length=128)
    scopes = JSONField(default=list)
    created_at = UTCDateTimeField(default=_now)
    last_used_at = UTCDateTimeField(null=True)
    revoked_at = UTCDateTimeField(null=True)
    expires_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "api_keys"


class RefreshToken(BaseModel):
    """One opaque refresh token; a login starts a family, each rotation adds a member."""

    jti = peewee.CharField(primary_key=True, max_length=64)
    family_id = peewee.CharField(max_length=64, index=True)
    user = peewee.ForeignKeyField(User, backref="refresh_tokens", on_delete="CASCADE")
    token_hash = peewee.CharField(max_length=128)
    issued_at = UTCDateTimeField(default=_now)
    expires_at = UTCDateTimeField()
    used_at = UTCDateTimeField(null=True)
    replaced_by = peewee.CharField(max_length=64, null=True)
    revoked_at = UTCDateTimeField(null=True)
    #: Scopes granted to the session at login (copied on rotation); NULL before migration 2.
    scopes = JSONField(null=True)

    class Meta:
        table_name = "refresh_tokens"


class RevokedToken(BaseModel):
    """Access-token ``jti`` (or session family id) refused until ``expires_at``, then pruned."""

    jti = peewee.CharField(primary_key=True, max_length=64)
    expires_at = UTCDateTimeField(index=True)

    class Meta:
        table_name = "revoked_tokens"


class ModelRecord(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40, default=partial(new_id, "mdl"))
    #: NULL for models owned by the system (the demo model).
    owner = peewee.ForeignKeyField(User, backref="models", null=True, on_delete="CASCADE")
    name = peewee.CharField(max_length=200)
    description = peewee.TextField(default="")
    tags = JSONField(default=list)
    public = peewee.BooleanField(default=False)
    kind = peewee.CharField(max_length=16, default="llm")
    qtype = peewee.CharField(max_length=32, null=True)
    status = peewee.CharField(max_length=32, default="pending_upload")
    #: Relative to ``Settings.data_dir``.
    file_path = peewee.CharField(max_length=1024, null=True)
    size_bytes = peewee.BigIntegerField(null=True)
    sha256 = peewee.CharField(max_length=64, null=True)
    metadata = JSONField(default=dict)
    validation_report = JSONField(null=True)
    source_model = peewee.ForeignKeyField(
        "self", backref="derived_models", null=True, on_delete="SET NULL"
    )
    quantization_report = JSONField(null=True)
    created_at = UTCDateTimeField(default=_now)
    updated_at = UTCDateTimeField(default=_now)

    class Meta:
        table_name = "models"
        indexes = ((("owner", "created_at"), False), (("public", "status"), False))


class Job(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40, default=partial(new_id, "job"))
    owner = peewee.ForeignKeyField(User, backref="jobs", on_delete="CASCADE")
    kind = peewee.CharField(max_length=32)
    status = peewee.CharField(max_length=16, default="queued")
    progress = peewee.FloatField(default=0.0)
    params = JSONField(default=dict)
    result = JSONField(null=True)
    error = JSONField(null=True)
    attempts = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField(default=3)
    #: Unique per (owner, kind) when set; NULLs never collide.
    idempotency_key = peewee.CharField(max_length=200, null=True)
    lease_owner = peewee.CharField(max_length=200, null=True)
    lease_expires_at = UTCDateTimeField(null=True)
    heartbeat_at = UTCDateTimeField(null=True)
    #: Earliest time a worker may (re)start the job: retry back-off.
    not_before = UTCDateTimeField(null=True)
    cancel_requested = peewee.BooleanField(default=False)
    webhook_url = peewee.CharField(max_length=2048, null=True)
    created_at = UTCDateTimeField(default=_now)
    started_at = UTCDateTimeField(null=True)
    finished_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "jobs"
        indexes = (
            (("owner", "kind", "idempotency_key"), True),
            (("status", "created_at"), False),
            (("owner", "created_at"), False),
            (("status", "lease_expires_at"), False),
        )


class JobEvent(BaseModel):
    """Append-only progress/status events of a job; clients stream those after a given id."""

    id = peewee.BigAutoField()
    job = peewee.ForeignKeyField(Job, backref="events", on_delete="CASCADE")
    created_at = UTCDateTimeField(default=_now)
    type = peewee.CharField(max_length=32)
    data = JSONField(default=dict)

    class Meta:
        table_name = "job_events"
        indexes = ((("job", "id"), False),)


class UsageRecord(BaseModel):
    """One metered request (see :mod:`bitnet_sdk.service.accounting.usage`)."""

    id = peewee.BigAutoField()
    user = peewee.ForeignKeyField(User, backref="usage", on_delete="CASCADE")
    created_at = UTCDateTimeField(default=_now)
    #: UTC calendar day of ``created_at``: the grouping key of daily reports.
    day = peewee.DateField()
    operation = peewee.CharField(max_length=64)
    tokens_in = peewee.BigIntegerField(default=0)
    tokens_out = peewee.BigIntegerField(default=0)
    compute_units = peewee.FloatField(default=0.0)
    status_code = peewee.IntegerField(default=200)
    request_id = peewee.CharField(max_length=64, null=True)
    #: While its request runs: the serving process (``host:pid:nonce``), which brings the
    #: amounts up to date every few seconds (``heartbeat_at``); NULL once final. See
    #: :mod:`bitnet_sdk.service.accounting.open_usage`.
    open_owner = peewee.CharField(max_length=96, null=True)
    heartbeat_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "usage_records"
        indexes = ((("user", "created_at"), False), (("user", "day", "operation"), False),
                   (("heartbeat_at",), False))


class StreamCancel(BaseModel):
    """A request to stop a running generation, for processes that share no Redis
    (:mod:`bitnet_sdk.service.inference.cancellation`)."""

    id = peewee.BigAutoField()
    request_id = peewee.CharField(max_length=64, index=True)
    #: The user whose generation it must be; NULL: anyone's (an admin's request).
    owner = peewee.CharField(max_length=40, null=True)
    created_at = UTCDateTimeField(default=_now, index=True)

    class Meta:
        table_name = "stream_cancels"


class QuotaReservation(BaseModel):
    """Tokens and compute units held for an inference request in flight.

    See :mod:`bitnet_sdk.service.accounting.reservations`: a live row (``expires_at``
    in the future) counts toward its user's monthly quotas like a usage record;
    an expired one (its process died) counts for nothing and is deleted later.
    """

    id = peewee.CharField(primary_key=True, max_length=40, default=partial(new_id, "rsv"))
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    tokens = peewee.BigIntegerField(default=0)
    compute_units = peewee.FloatField(default=0.0)
    created_at = UTCDateTimeField(default=_now)
    expires_at = UTCDateTimeField()
    request_id = peewee.CharField(max_length=64, null=True)

    class Meta:
        table_name = "quota_reservations"
        indexes = ((("user", "expires_at"), False),)


class LiveSocket(BaseModel):
    """One open, authenticated WebSocket, counted against its user's connection cap.

    Its serving process renews ``expires_at`` while the socket lives; a row whose
    process died expires and stops counting (``bitnet_sdk.service.accounting.live_sockets``).
    """

    id = peewee.CharField(primary_key=True, max_length=40, default=partial(new_id, "sck"))
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    created_at = UTCDateTimeField(default=_now)
    expires_at = UTCDateTimeField()

    class Meta:
        table_name = "live_sockets"
        indexes = ((("user", "expires_at"), False),)


class RateLimitCounter(BaseModel):
    """Per limiter key: how many :class:`RateLimitHit` rows it has (the row is also the lock)."""

    key = peewee.CharField(primary_key=True, max_length=255)
    count = peewee.IntegerField(default=0)
    updated_at = peewee.DoubleField(default=0.0)

    class Meta:
        table_name = "rate_limit_counters"


class RateLimitHit(BaseModel):
    """One request counted in a sliding window (epoch seconds), pruned once outside it."""

    id = peewee.BigAutoField()
    key = peewee.CharField(max_length=255)
    ts = peewee.DoubleField()

    class Meta:
        table_name = "rate_limit_hits"
        indexes = ((("key", "ts"), False),)


class UpgradeRequest(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40, default=partial(new_id, "upg"))
    user = peewee.ForeignKeyField(User, backref="upgrade_requests", on_delete="CASCADE")
    from_tier = peewee.CharField(max_length=32)
    to_tier = peewee.CharField(max_length=32)
    status = peewee.CharField(max_length=16, default="pending", index=True)
    reason = peewee.TextField(default="")
    created_at = UTCDateTimeField(default=_now)
    decided_at = UTCDateTimeField(null=True)
    decided_by = peewee.ForeignKeyField(
        User, backref="decided_upgrades", null=True, on_delete="SET NULL"
    )

    class Meta:
        table_name = "upgrade_requests"


class WebhookDelivery(BaseModel):
    id = peewee.BigAutoField()
    job = peewee.ForeignKeyField(Job, backref="webhook_deliveries", on_delete="CASCADE")
    url = peewee.CharField(max_length=2048)
    event = peewee.CharField(max_length=64)
    payload = JSONField(default=dict)
    attempt = peewee.IntegerField(default=0)
    status = peewee.CharField(max_length=16, default="pending")
    next_attempt_at = UTCDateTimeField(null=True)
    response_code = peewee.IntegerField(null=True)
    last_error = peewee.TextField(null=True)
    created_at = UTCDateTimeField(default=_now)
    delivered_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "webhook_deliveries"
        indexes = ((("status", "next_attempt_at"), False),)


#: In dependency order (referenced tables first).
ALL_MODELS: tuple[type[BaseModel], ...] = (
    User,
    ApiKey,
    RefreshToken,
    RevokedToken,
    ModelRecord,
    Job,
    JobEvent,
    UsageRecord,
    QuotaReservation,
    LiveSocket,
    StreamCancel,
    RateLimitCounter,
    RateLimitHit,
    UpgradeRequest,
    WebhookDelivery,
)
