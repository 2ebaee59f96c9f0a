"""``bitnet serve``: run the API server (HTTP, SSE and WebSocket on one port).

The port is bound first: a busy port is reported (exit status 1) before anything is
created, so a mistyped or taken port never leaves a data directory or prints the
one-time administrator password for nothing.
"""

from __future__ import annotations

import argparse
import sys

from bitnet_sdk.cli.output import add_log_format
from bitnet_sdk.config import Settings, parse_origins

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the API server",
                       description="Serve the BitNet API (defaults from BITNET_* variables).")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8080)")
    p.add_argument("--db", dest="database_url", metavar="URL",
                   help="database URL: sqlite:///path (default <data-dir>/bitnet.db) or postgresql://…")
    p.add_argument("--data-dir", help="models, uploads, SQLite file and secrets (default ./data)")
    p.add_argument("--workers", type=int, help="in-server job worker threads (default 1)")
    p.add_argument("--processes", type=int,
                   help="server processes sharing the port (default 1; about one per core)")
    p.add_argument("--redis", dest="redis_url", metavar="URL",
                   help="redis://… for shared rate limits (default: the database alone)")
    p.add_argument("--storage", dest="storage_url", metavar="URL",
                   help="where model files live: s3://bucket/prefix (credentials from AWS_* "
                        "variables; default: <data-dir>/models)")
    p.add_argument("--s3-endpoint", dest="s3_endpoint_url", metavar="URL",
                   help="endpoint of an S3-compatible service (default AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--backend", help="compute backend (default auto)")
    p.add_argument("--max-batch-size", type=int, metavar="N",
                   help="generations of one model decoded together in one step (default 16, "
                        "BITNET_MAX_BATCH_SIZE); more wait in the model's queue")
    p.add_argument("--queue-size", dest="model_queue_size", type=int, metavar="N",
                   help="requests waiting per model before 503 (default 16, "
                        "BITNET_MODEL_QUEUE_SIZE)")
    p.add_argument("--no-demo", dest="demo_model", action="store_const", const=False,
                   help="do not create the demo model on first start")
    p.add_argument("--cors-origin", dest="cors_origins", action="append", metavar="ORIGIN",
                   help="a web origin (scheme://host[:port], or *) allowed to call the API from "
                        "browsers; repeat for several (default: none, or BITNET_CORS_ORIGINS)")
    add_log_format(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitnet_sdk.server.asgi.tornado_app import listen
    from bitnet_sdk.server.run import run_server

    try:  # a bad --cors-origin or BITNET_* value is a usage error, not a traceback
        settings = Settings.from_env(
            host=args.host, port=args.port, database_url=args.database_url,
            data_dir=args.data_dir, workers=args.workers, backend=args.backend,
            demo_model=args.demo_model, max_batch_size=args.max_batch_size,
            model_queue_size=args.model_queue_size, processes=args.processes,
            redis_url=args.redis_url, storage_url=args.storage_url,
            s3_endpoint_url=args.s3_endpoint_url,
            cors_origins=parse_origins(",".join(args.cors_origins)) if args.cors_origins else None,
        )
    except ValueError as exc:
        print(f"bitnet serve: {exc}", file=sys.stderr)
        return 2
    if settings.processes < 1:
        print("bitnet serve: --processes must be at least 1", file=sys.stderr)
        return 2
    try:
        sockets = listen(settings.host, settings.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"bitnet serve: cannot listen on {settings.host}:{settings.port}: {reason}. "
              "Is another server running there? Choose another --port (or BITNET_PORT).",
              file=sys.stderr)
        return 1
    from bitnet_sdk.service.registry.storage import StorageError

    try:
        return run_server(settings, sockets=sockets)
    except StorageError as exc:
        print(f"bitnet serve: {exc}", file=sys.stderr)
        return 1
