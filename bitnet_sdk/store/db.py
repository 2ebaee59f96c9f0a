"""Opening the database from a URL, and the transactions every writer uses.

Models are bound to :data:`database_proxy`; :func:`connect` creates the real
database from a URL and (by default) points the proxy at it, so the same code
runs on SQLite (one host, default) and PostgreSQL (several server and worker
processes or hosts) with no change but the URL:

* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``: WAL journal
  (readers never block the writer), foreign keys on, a 30 s busy timeout so
  concurrent writers queue instead of failing.
* ``postgresql://user:pass@host:port/db`` (also ``postgres://`` and the
  ``+pool`` variants of both, through :mod:`playhouse.db_url`).

Writers that read-then-write use :func:`write_transaction`: on SQLite it
starts with ``BEGIN IMMEDIATE`` (takes the write lock up front, so two
processes cannot both read the old state and the busy timeout applies); on
PostgreSQL a plain transaction, with :func:`advisory_lock` or ``SELECT … FOR
UPDATE`` where rows must be serialised.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import peewee
from playhouse import db_url

__all__ = [
    "advisory_lock",
    "connect",
    "database_proxy",
    "is_postgres",
    "is_sqlite",
    "resolve",
    "write_transaction",
]

log = logging.getLogger(__name__)

#: Every model is bound to this proxy; :func:`connect` initialises it.
database_proxy = peewee.DatabaseProxy()

#: Applied to every new SQLite connection. The WAL journal mode is not in this
#: list: it is a property of the file, set once by :func:`_enable_wal`.
SQLITE_PRAGMAS: tuple[tuple[str, object], ...] = (
    ("busy_timeout", 30_000),
    ("foreign_keys", 1),
    ("synchronous", "normal"),
)
_WAL_ATTEMPTS = 50

_SQLITE_SCHEMES = {"sqlite", "sqlite+pool"}
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgres+pool", "postgresql+pool"}


def connect(url: str, *, bind: bool = True) -> peewee.Database:
    """Create the database named by ``url`` and, if ``bind``, point the models at it.

    Connections are opened lazily, one per thread (for a SQLite file, one is
    opened and closed here to switch the file to WAL). Raises ``ValueError``
    for schemes other than SQLite and PostgreSQL.
    """
    scheme = urlparse(url).scheme
    if scheme in _SQLITE_SCHEMES:
        path = db_url.parse(url)["database"]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = db_url.connect(url, pragmas=list(SQLITE_PRAGMAS), timeout=30)
        if path != ":memory:":
            _enable_wal(db)
    elif scheme in _POSTGRES_SCHEMES:
        db = db_url.connect(url, unquote_password=True, unquote_user=True)
    else:
        raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")
    if bind:
        database_proxy.initialize(db)
    return db


def _enable_wal(db: peewee.Database) -> None:
    """Switch the file to WAL, retrying: SQLite answers "database is locked" at once
    (without its busy handler) when several processes open a new file together."""
    for attempt in range(_WAL_ATTEMPTS):
        try:
            with db.connection_context():
                mode = db.execute_sql("PRAGMA journal_mode = wal").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("SQLite kept journal mode %r (WAL unsupported here)", mode)
            return
        except peewee.OperationalError as exc:
            if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                raise
        time.sleep(0.01 * (attempt + 1))


def resolve(db: peewee.Database | peewee.DatabaseProxy | None = None) -> peewee.Database:
    """The real database behind ``db`` (the bound proxy when ``None``)."""
    target: Any = database_proxy if db is None else db
    if isinstance(target, peewee.DatabaseProxy):
        target = target.obj
        if target is None:
            raise RuntimeError("database not configured: call bitnet_sdk.store.connect(url) first")
    return target


def is_sqlite(db: peewee.Database | peewee.DatabaseProxy | None = None) -> bool:
    return isinstance(resolve(db), peewee.SqliteDatabase)


def is_postgres(db: peewee.Database | peewee.DatabaseProxy | None = None) -> bool:
    return isinstance(resolve(db), peewee.PostgresqlDatabase)


@contextmanager
def write_transaction(db: peewee.Database | peewee.DatabaseProxy | None = None) -> Iterator[Any]:
    """A transaction for read-modify-write work (a savepoint when already inside one).

    On SQLite the outermost level is ``BEGIN IMMEDIATE``: the write lock is
    taken before the first read, so concurrent processes serialise here rather
    than failing with "database is locked" when a reader upgrades to a writer.
    """
    real = resolve(db)
    if isinstance(real, peewee.SqliteDatabase) and real.transaction_depth() == 0:
        ctx = real.atomic("IMMEDIATE")
    else:
        ctx = real.atomic()
    with ctx as txn:
        yield txn


def advisory_lock(name: str, db: peewee.Database | peewee.DatabaseProxy | None = None) -> None:
    """Serialise on ``name`` until the current transaction ends.

    PostgreSQL: ``pg_advisory_xact_lock`` on a 64-bit hash of ``name``. SQLite:
    nothing to do, :func:`write_transaction` already holds the database-wide
    write lock. Must be called inside a transaction.
    """
    real = resolve(db)
    if isinstance(real, peewee.PostgresqlDatabase):
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        real.execute_sql("SELECT pg_advisory_xact_lock(%s)", (int.from_bytes(digest, "big", signed=True),))
