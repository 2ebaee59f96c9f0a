"""``bitnet worker``: a process that runs queued jobs (quantization, batch inference).

It runs the same job loop as the threads inside ``bitnet serve``, on the same database and
data directory, so jobs run wherever a worker is free: start as many as the machine (or
machines, with PostgreSQL and a shared data directory) can take, and ``bitnet serve
--workers 0`` to keep job work out of the API processes. A worker killed mid-job is replaced
by the lease: another worker takes the job over once ``--lease-s`` has passed without a
heartbeat. SIGTERM or Ctrl-C stops it gracefully: running jobs go back to the queue.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from bitnet_sdk.cli.output import add_log_format
from bitnet_sdk.config import Settings

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run queued jobs (quantization, batch inference)",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--db", dest="database_url", metavar="URL",
                   help="database URL (default sqlite:///<data-dir>/bitnet.db)")
    p.add_argument("--data-dir", help="models and SQLite file, shared with the server (default ./data)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once (default 1)")
    p.add_argument("--lease-s", type=float,
                   help="seconds a job stays leased without a heartbeat (default 30, BITNET_JOB_LEASE_S)")
    p.add_argument("--poll-s", type=float,
                   help="seconds between looks at the queue when idle (default 1, BITNET_JOB_POLL_S)")
    p.add_argument("--redis", dest="redis_url", metavar="URL",
                   help="redis://… : job wake-ups and cancellations from every process at once "
                        "(default: the database alone)")
    p.add_argument("--storage", dest="storage_url", metavar="URL",
                   help="where model files live: s3://bucket/prefix (credentials from AWS_* "
                        "variables; default: <data-dir>/models)")
    p.add_argument("--s3-endpoint", dest="s3_endpoint_url", metavar="URL",
                   help="endpoint of an S3-compatible service (default AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--backend", help="compute backend (default auto)")
    add_log_format(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitnet_sdk.server.lifecycle import open_store
    from bitnet_sdk.service.jobs.workers import WorkerOptions, WorkerPool

    if args.concurrency < 1:
        print("bitnet worker: --concurrency must be at least 1")
        return 2
    settings = Settings.from_env(database_url=args.database_url, data_dir=args.data_dir,
                                 workers=args.concurrency, backend=args.backend,
                                 storage_url=args.storage_url, redis_url=args.redis_url,
                                 s3_endpoint_url=args.s3_endpoint_url)
    for path in (settings.data_dir, settings.models_dir, settings.uploads_dir):
        path.mkdir(parents=True, exist_ok=True)
    from bitnet_sdk.service.registry.storage import StorageError, for_settings

    try:
        for_settings(settings).check()
    except StorageError as exc:
        print(f"bitnet worker: {exc}")
        return 1
    db = open_store(settings.db_url)
    options = WorkerOptions.from_env(concurrency=args.concurrency, lease_s=args.lease_s,
                                     poll_s=args.poll_s)
    pool = WorkerPool(settings, options)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    pool.start()
    print(f"bitnet worker {pool.name}: {options.concurrency} job thread(s), lease "
          f"{options.lease_s:g} s, database {_redacted(settings.db_url)}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        print("bitnet worker: stopping (running jobs go back to the queue)", flush=True)
        pool.stop()
        db.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _redacted(url: str) -> str:
    """The URL without a password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
