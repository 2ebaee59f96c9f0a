"""Migration 1: create every table of the first release.

The models here are a frozen copy of the schema at version 1, deliberately
independent of :mod:`bitnet_sdk.store.models`: when a later migration adds a
column, this one must still create the version-1 tables, or the later
migration would fail on a fresh database. Defaults that only matter to Python
(id factories, timestamps) are left out; the database sees the same columns.
"""

from __future__ import annotations

import peewee

from bitnet_sdk.store.fields import JSONField, UTCDateTimeField

__all__ = ["apply"]

Char = peewee.CharField
Dt = UTCDateTimeField


def _tables(db: peewee.Database) -> list[type[peewee.Model]]:
    class Base(peewee.Model):
        class Meta:
            database = db

    class User(Base):
        id = Char(primary_key=True, max_length=40)
        email = Char(max_length=320, unique=True)
        password_hash = peewee.TextField(null=True)
        tier = Char(max_length=32, default="developer")
        scopes = JSONField(default=list)
        is_admin = peewee.BooleanField(default=False)
        disabled = peewee.BooleanField(default=False)
        created_at = Dt()
        last_login_at = Dt(null=True)

        class Meta:
            table_name = "users"

    class ApiKey(Base):
        id = Char(primary_key=True, max_length=40)
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        name = Char(max_length=200)
        prefix = Char(max_length=64, unique=True)
        secret_hash = Char(max_length=128)
        scopes = JSONField(default=list)
        created_at = Dt()
        last_used_at = Dt(null=True)
        revoked_at = Dt(null=True)
        expires_at = Dt(null=True)

        class Meta:
            table_name = "api_keys"

    class RefreshToken(Base):
        jti = Char(primary_key=True, max_length=64)
        family_id = Char(max_length=64, index=True)
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        token_hash = Char(max_length=128)
        issued_at = Dt()
        expires_at = Dt()
        used_at = Dt(null=True)
        replaced_by = Char(max_length=64, null=True)
        revoked_at = Dt(null=True)

        class Meta:
            table_name = "refresh_tokens"

    class RevokedToken(Base):
        jti = Char(primary_key=True, max_length=64)
        expires_at = Dt(index=True)

        class Meta:
            table_name = "revoked_tokens"

    class ModelRecord(Base):
        id = Char(primary_key=True, max_length=40)
        owner = peewee.ForeignKeyField(User, null=True, on_delete="CASCADE")
        name = Char(max_length=200)
        description = peewee.TextField(default="")
        tags = JSONField(default=list)
        public = peewee.BooleanField(default=False)
        kind = Char(max_length=16, default="llm")
        qtype = Char(max_length=32, null=True)
        status = Char(max_length=32, default="pending_upload")
        file_path = Char(max_length=1024, null=True)
        size_bytes = peewee.BigIntegerField(null=True)
        sha256 = Char(max_length=64, null=True)
        metadata = JSONField(default=dict)
        validation_report = JSONField(null=True)
        source_model = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")
        quantization_report = JSONField(null=True)
        created_at = Dt()
        updated_at = Dt()

        class Meta:
            table_name = "models"
            indexes = ((("owner", "created_at"), False), (("public", "status"), False))

    class Job(Base):
        id = Char(primary_key=True, max_length=40)
        owner = peewee.ForeignKeyField(User, on_delete="CASCADE")
        kind = Char(max_length=32)
        status = Char(max_length=16, default="queued")
        progress = peewee.FloatField(default=0.0)
        params = JSONField(default=dict)
        result = JSONField(null=True)
        error = JSONField(null=True)
        attempts = peewee.IntegerField(default=0)
        max_attempts = peewee.IntegerField(default=3)
        idempotency_key = Char(max_length=200, null=True)
        lease_owner = Char(max_length=200, null=True)
        lease_expires_at = Dt(null=True)
        heartbeat_at = Dt(null=True)
        not_before = Dt(null=True)
        cancel_requested = peewee.BooleanField(default=False)
        webhook_url = Char(max_length=2048, null=True)
        created_at = Dt()
        started_at = Dt(null=True)
        finished_at = Dt(null=True)

        class Meta:
            table_name = "jobs"
            indexes = (
                (("owner", "kind", "idempotency_key"), True),
                (("status", "created_at"), False),
                (("owner", "created_at"), False),
                (("status", "lease_expires_at"), False),
            )

    class JobEvent(Base):
        id = peewee.BigAutoField()
        job = peewee.ForeignKeyField(Job, on_delete="CASCADE")
        created_at = Dt()
        type = Char(max_length=32)
        data = JSONField(default=dict)

        class Meta:
            table_name = "job_events"
            indexes = ((("job", "id"), False),)

    class UsageRecord(Base):
        id = peewee.BigAutoField()
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        created_at = Dt()
        day = peewee.DateField()
        operation = Char(max_length=64)
        tokens_in = peewee.BigIntegerField(default=0)
        tokens_out = peewee.BigIntegerField(default=0)
        compute_units = peewee.FloatField(default=0.0)
        status_code = peewee.IntegerField(default=200)
        request_id = Char(max_length=64, null=True)

        class Meta:
            table_name = "usage_records"
            indexes = ((("user", "created_at"), False), (("user", "day", "operation"), False))

    class RateLimitCounter(Base):
        key = Char(primary_key=True, max_length=255)
        count = peewee.IntegerField(default=0)
        updated_at = peewee.DoubleField(default=0.0)

        class Meta:
            table_name = "rate_limit_counters"

    class RateLimitHit(Base):
        id = peewee.BigAutoField()
        key = Char(max_length=255)
        ts = peewee.DoubleField()

        class Meta:
            table_name = "rate_limit_hits"
            indexes = ((("key", "ts"), False),)

    class UpgradeRequest(Base):
        id = Char(primary_key=True, max_length=40)
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        from_tier = Char(max_length=32)
        to_tier = Char(max_length=32)
        status = Char(max_length=16, default="pending", index=True)
        reason = peewee.TextField(default="")
        created_at = Dt()
        decided_at = Dt(null=True)
        decided_by = peewee.ForeignKeyField(
            User, null=True, on_delete="SET NULL", backref="decided_upgrades"
        )

        class Meta:
            table_name = "upgrade_requests"

    class WebhookDelivery(Base):
        id = peewee.BigAutoField()
        job = peewee.ForeignKeyField(Job, on_delete="CASCADE")
        url = Char(max_length=2048)
        event = Char(max_length=64)
        payload = JSONField(default=dict)
        attempt = peewee.IntegerField(default=0)
        status = Char(max_length=16, default="pending")
        next_attempt_at = Dt(null=True)
        response_code = peewee.IntegerField(null=True)
        last_error = peewee.TextField(null=True)
        created_at = Dt()
        delivered_at = Dt(null=True)

        class Meta:
            table_name = "webhook_deliveries"
            indexes = ((("status", "next_attempt_at"), False),)

    return [
        User, ApiKey, RefreshToken, RevokedToken, ModelRecord, Job, JobEvent,
        UsageRecord, RateLimitCounter, RateLimitHit, UpgradeRequest, WebhookDelivery,
    ]


def apply(db: peewee.Database) -> None:
    """Create the version-1 tables and their indexes."""
    db.create_tables(_tables(db), safe=True)
