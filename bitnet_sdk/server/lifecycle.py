"""Start-up and shutdown of one server instance (run by the ASGI lifespan).

Start-up fails hard: a server that cannot open its database or data directory
must not start answering requests.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bitnet_sdk.server.context import AppContext

if TYPE_CHECKING:
    import peewee

__all__ = ["open_store", "shutdown", "startup"]

log = logging.getLogger(__name__)


def open_store(url: str) -> peewee.Database:
    """Connect to the database at ``url``, bind the models to it and migrate it."""
    from bitnet_sdk import store

    db = store.connect(url)
    store.migrate(db)
    return db


async def startup(ctx: AppContext) -> None:
    settings = ctx.settings
    for path in (settings.data_dir, settings.models_dir, settings.uploads_dir):
        path.mkdir(parents=True, exist_ok=True)
    # Resolve the JWT secret once (it may live in a file) instead of per request.
    ctx.settings = settings = settings.with_(jwt_secret=await asyncio.to_thread(settings.secret))
    ctx.db = await asyncio.to_thread(open_store, settings.db_url)
    from bitnet_sdk.service.registry.models import recover
    from bitnet_sdk.service.registry.storage import for_settings

    await asyncio.to_thread(for_settings(settings).check)  # a missing bucket fails start-up

    # Partial uploads a crash left behind, deletions it interrupted.
    await asyncio.to_thread(recover, settings)
    from bitnet_sdk.service.accounting.open_usage import keeper

    # Usage records of running requests kept up to date; a dead process's ones finalised.
    keeper(settings.usage_checkpoint_s).start()
    from bitnet_sdk.service.inference.model_cache import ModelCache
    from bitnet_sdk.service.inference.service import InferenceService

    # Loaded models shared by REST, SSE and WebSocket requests (stopped at shutdown).
    ctx.model_cache = cache = ModelCache.from_settings(settings, observer=ctx.metrics.batching)
    ctx.metrics.batching.watch(cache.batch_stats, cache.stats)
    ctx.metrics.watch_cache(cache)
    ctx.inference = inference = InferenceService(settings, cache, telemetry=ctx.metrics)
    from bitnet_sdk.service.jobs.workers import start_job_services

    # Job worker threads (Settings.workers, may be 0), lease heartbeats, webhook deliveries.
    ctx.jobs = await asyncio.to_thread(start_job_services, settings, inference=inference,
                                       telemetry=ctx.metrics)
    log.info("server started (data dir %s)", settings.data_dir)


async def shutdown(ctx: AppContext) -> None:
    services = {"jobs": ctx.jobs, "inference": ctx.inference, "model_cache": ctx.model_cache}
    for name, service in services.items():  # the reverse of the start-up order
        stop = getattr(service, "stop", None)
        if stop is not None:
            try:
                await asyncio.to_thread(stop)
            except Exception:
                log.exception("service %s failed to stop", name)
    if ctx.db is not None:
        ctx.db.close()
        ctx.db = None
    log.info("server stopped")
