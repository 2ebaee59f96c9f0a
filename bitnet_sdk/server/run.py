"""``bitnet serve``: prepare the data directory and store, then serve on Tornado.

HTTP (REST, SSE) and WebSocket share one port. Preparation runs before the
server listens, so its output (the first administrator's credentials, printed
once) reaches the operator's terminal and a broken database stops start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bitnet_sdk.config import Settings

__all__ = ["prepare", "run_server", "websocket_routes"]

log = logging.getLogger(__name__)


def prepare(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Create directories, migrate the store, create the first admin and the demo model."""
    from bitnet_sdk.auth import ensure_admin
    from bitnet_sdk.server.lifecycle import open_store
    from bitnet_sdk.service.registry.demo import ensure_demo_model

    for path in (settings.data_dir, settings.models_dir, settings.uploads_dir):
        path.mkdir(parents=True, exist_ok=True)
    from bitnet_sdk.service.registry.storage import for_settings

    for_settings(settings).check()  # a missing bucket stops start-up here, not at the first upload
    db = open_store(settings.db_url)
    try:
        created = ensure_admin(settings)
        if created:
            email, password = created
            say("First start: created the administrator account (shown once, keep it):")
            say(f"  email:    {email}")
            say(f"  password: {password}")
        if settings.demo_model:
            model_id = ensure_demo_model(settings)
            if model_id:
                say(f"Created the demo model {model_id}.")
    finally:
        db.close()


def websocket_routes(app: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """Tornado WebSocket routes served beside the ASGI app (same port)."""
    from bitnet_sdk.server.websocket import routes

    return routes(app.bitnet)


def run_server(settings: Settings, say: Callable[[str], None] = print,
               sockets: list[Any] | None = None) -> int:
    """Prepare, then serve until SIGINT/SIGTERM; returns the exit status after a graceful stop.

    ``sockets``: listening sockets bound beforehand (``tornado_app.listen``), so that a
    busy port is found before the data directory, the administrator or the demo model
    are created. ``settings.processes > 1``: several forked server processes share the port
    (:mod:`bitnet_sdk.server.processes`, which binds it itself: the early sockets are closed).
    """
    try:
        prepare(settings, say)
    except BaseException:
        _close(sockets)
        raise
    if settings.processes > 1:
        from bitnet_sdk.server.processes import serve_processes

        _close(sockets)
        return serve_processes(settings, websocket_routes, say)
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.tornado_app import serve

    try:
        app = create_app(settings)
    except BaseException:
        _close(sockets)
        raise

    def started(server: Any) -> None:
        say(f"BitNet SDK serving on {server.url}  (docs: {server.url}/v1/docs)")

    serve(app, settings.host, settings.port, websocket_routes=websocket_routes(app),
          on_started=started, max_body_size=settings.max_upload_bytes + (1 << 20),
          sockets=sockets or ())
    return 0


def _close(sockets: list[Any] | None) -> None:
    for sock in sockets or ():
        sock.close()
