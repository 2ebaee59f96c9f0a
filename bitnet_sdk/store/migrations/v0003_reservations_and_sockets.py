"""Migration 3: quota reservations of requests in flight, and live WebSockets.

* ``quota_reservations``: the tokens and compute units an inference request
  may still use, held at admission so concurrent requests cannot overshoot a
  monthly quota (``bitnet_sdk.service.accounting.reservations``).
* ``live_sockets``: every open WebSocket, so the per-user connection cap holds
  across server processes (``bitnet_sdk.service.accounting.live_sockets``).

Both carry ``expires_at``: a row whose process was killed stops counting once
it expires. Frozen copies of the tables as of this version (see ``v0001_initial``).
"""

from __future__ import annotations

import peewee

from bitnet_sdk.store.fields import UTCDateTimeField

__all__ = ["apply"]


def _tables(db: peewee.Database) -> list[type[peewee.Model]]:
    class Base(peewee.Model):
        class Meta:
            database = db

    class User(Base):
        id = peewee.CharField(primary_key=True, max_length=40)

        class Meta:
            table_name = "users"

    class QuotaReservation(Base):
        id = peewee.CharField(primary_key=True, max_length=40)
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        tokens = peewee.BigIntegerField(default=0)
        compute_units = peewee.FloatField(default=0.0)
        created_at = UTCDateTimeField()
        expires_at = UTCDateTimeField()
        request_id = peewee.CharField(max_length=64, null=True)

        class Meta:
            table_name = "quota_reservations"
            indexes = ((("user", "expires_at"), False),)

    class LiveSocket(Base):
        id = peewee.CharField(primary_key=True, max_length=40)
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        created_at = UTCDateTimeField()
        expires_at = UTCDateTimeField()

        class Meta:
            table_name = "live_sockets"
            indexes = ((("user", "expires_at"), False),)

    return [QuotaReservation, LiveSocket]


def apply(db: peewee.Database) -> None:
    """Create the two tables and their indexes."""
    db.create_tables(_tables(db), safe=True)
