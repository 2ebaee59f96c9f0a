"""System operations: health, version, status, metrics, devices."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

from bitnet_sdk import __version__
from bitnet_sdk.api._http import json_response
from bitnet_sdk.server.context import AppContext, current
from bitnet_sdk.server.spec import load_spec

__all__ = ["get_devices", "get_health", "get_metrics", "get_status", "get_version"]

log = logging.getLogger(__name__)


async def get_health() -> Any:
    """Public: statuses and latencies only (details, such as free space, are for /status)."""
    ctx = current()
    checks = await asyncio.to_thread(_run_checks, ctx)
    worst = "error" if any(c["status"] == "error" for c in checks.values()) else "ok"
    body = {"status": worst, "checks": {name: {**c, "detail": None} for name, c in checks.items()}}
    if worst == "error":
        return json_response(body, 503, {"Retry-After": "5"})
    return json_response(body)


def _run_checks(ctx: AppContext) -> dict[str, dict[str, Any]]:
    return {"database": _timed(_check_database, ctx), "data_dir": _timed(_check_data_dir, ctx)}


def _timed(check: Any, ctx: AppContext) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        detail = check(ctx)
        status = "ok"
    except Exception as exc:  # a failing check is reported, never raised
        detail, status = f"{type(exc).__name__}: {exc}", "error"
        log.warning("health check %s failed: %s", getattr(check, "__name__", check), detail)
    return {"status": status, "detail": detail,
            "latency_ms": round((time.perf_counter() - start) * 1000, 3)}


def _check_database(ctx: AppContext) -> str | None:
    if ctx.db is None:
        raise RuntimeError("database not open")
    ctx.db.execute_sql("SELECT 1").fetchone()
    return None


def _check_data_dir(ctx: AppContext) -> str:
    data_dir = ctx.settings.data_dir
    fd, name = tempfile.mkstemp(prefix=".health-", dir=data_dir)
    os.close(fd)
    os.unlink(name)
    free = shutil.disk_usage(data_dir).free
    return f"writable, {free / 1024**3:.1f} GiB free"


def get_version() -> Any:
    return json_response({
        "version": __version__,
        "api_version": str(load_spec()["info"]["version"]),
        "commit": os.environ.get("BITNET_COMMIT") or None,
    })


def get_status() -> Any:
    ctx = current()
    cache, jobs = ctx.model_cache, ctx.jobs
    queue = jobs.queue_stats() if jobs else {"depth": 0, "running": 0, "oldest_queued_at": None}
    workers = jobs.worker_stats() if jobs else {"count": 0, "busy": 0}
    from bitnet_sdk import backends

    usable = [b["name"] for b in backends.describe()["backends"] if b["available"]]
    return json_response({
        "status": "ok",
        "version": __version__,
        "started_at": datetime.fromtimestamp(ctx.started_at, timezone.utc).isoformat(),
        "uptime_seconds": round(ctx.uptime_s, 3),
        "loaded_models": cache.describe() if cache else [],
        "queue": queue,
        "backends": usable,
        "python": platform.python_version(),
        "checks": _run_checks(ctx),
        "workers": workers,
        "process_id": os.getpid(),
    })


def get_metrics() -> Any:
    # Text exposition format 0.0.4; the spec names the media type without parameters
    # and Connexion validates the header literally (UTF-8 is the format's default).
    return current().metrics.render().decode(), 200, {"Content-Type": "text/plain"}


def get_devices() -> Any:
    from bitnet_sdk import backends

    described = backends.describe()
    return json_response({
        "auto": described["auto"],
        "backends": [_backend(b) for b in described["backends"]],
    })


def _backend(b: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "version", "priority", "available", "error", "capabilities", "devices")
    return {k: b.get(k) for k in keys}
