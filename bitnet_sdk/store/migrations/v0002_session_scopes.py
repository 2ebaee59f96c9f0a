"""Migration 2: refresh tokens remember the scopes granted to their session.

``refresh_tokens.scopes`` (JSON list, NULL for sessions started before this
migration): a refresh issues at most these scopes (RFC 6749 §6), so a session
narrowed at login stays narrow. Sessions without a recorded grant cannot be
refreshed (their holders log in again): widening them to all of the user's
scopes is exactly what this migration exists to prevent.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from bitnet_sdk.store.fields import JSONField

__all__ = ["apply"]


def apply(db: peewee.Database) -> None:
    migrate(SchemaMigrator.from_database(db).add_column("refresh_tokens", "scopes", JSONField(null=True)))
