"""Migration 4: usage records written while their request runs; stream cancellations.

* ``usage_records.open_owner`` and ``usage_records.heartbeat_at`` (NULL for every
  existing record, which is final): an inference request's record is written at
  admission and kept up to date by its serving process, so a process killed
  mid-stream leaves a record that any live process finalises
  (``bitnet_sdk.service.accounting.open_usage``). Indexed on ``heartbeat_at``
  for that sweep.
* ``stream_cancels``: requests to stop a generation, read by every server
  process when they share no Redis (``bitnet_sdk.service.inference.cancellation``).

Frozen copies of the new table as of this version (see ``v0001_initial``).
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from bitnet_sdk.store.fields import UTCDateTimeField

__all__ = ["apply"]


def _stream_cancels(db: peewee.Database) -> type[peewee.Model]:
    class StreamCancel(peewee.Model):
        id = peewee.BigAutoField()
        request_id = peewee.CharField(max_length=64, index=True)
        owner = peewee.CharField(max_length=40, null=True)
        created_at = UTCDateTimeField(index=True)

        class Meta:
            database = db
            table_name = "stream_cancels"

    return StreamCancel


def apply(db: peewee.Database) -> None:
    """Add the two columns and their index, and create ``stream_cancels``."""
    migrator = SchemaMigrator.from_database(db)
    migrate(
        migrator.add_column("usage_records", "open_owner", peewee.CharField(max_length=96, null=True)),
        migrator.add_column("usage_records", "heartbeat_at", UTCDateTimeField(null=True)),
        migrator.add_index("usage_records", ("heartbeat_at",), False),
    )
    db.create_tables([_stream_cancels(db)], safe=True)
