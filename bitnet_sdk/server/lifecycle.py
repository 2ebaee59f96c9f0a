"""Start-up and shutdown of one server instance (run by the ASGI lifespan).

Start-up fails hard: a server that cannot open its database or data directory
must not start answering requests.
"""

from __future__ import annotations

import asyncio
import logging

from bitnet_sdk.server.context import AppContext

__all__ = ["shutdown", "startup"]

log = logging.getLogger(__name__)


async def startup(ctx: AppContext) -> None:
    settings = ctx.settings
    for path in (settings.data_dir, settings.models_dir, settings.uploads_dir):
        path.mkdir(parents=True, exist_ok=True)
    from bitnet_sdk import store

    ctx.db = await asyncio.to_thread(store.open_database, settings.db_url)
    log.info("server started", extra={"data_dir": str(settings.data_dir),
                                      "database": store.describe_url(settings.db_url)})


async def shutdown(ctx: AppContext) -> None:
    for name, service in reversed(list(ctx.services.items())):
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
