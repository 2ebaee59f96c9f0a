"""A real API server in a child process (for tests that need several processes or kill -9).

The child runs the same app as ``live_server`` (HTTP and WebSocket) with the given
settings (the JWT secret resolved here, so tokens made by the test are valid there) and
prints its URL; closing its stdin stops it, :meth:`Server.kill` is ``kill -9``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import asdict, fields

from bitnet_sdk.config import Settings

__all__ = ["Server"]

_SERVER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from bitnet_sdk.config import Settings, TierLimits
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from bitnet_sdk.server.run import websocket_routes
    values = json.loads(sys.argv[1])
    values["tiers"] = {k: TierLimits(**v) for k, v in values["tiers"].items()}
    app = create_app(Settings(**values))
    with ServerThread(app, websocket_routes=websocket_routes(app)) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin (or kills us)
    """
)


class Server:
    """One API server process; ``kill()`` is ``kill -9``."""

    def __init__(self, settings: Settings, *, wait: bool = True) -> None:
        """Start the process; with ``wait`` (the default) also :meth:`wait_ready`."""
        values = {f.name: getattr(settings, f.name) for f in fields(Settings)}
        values["data_dir"] = str(settings.data_dir)
        values["jwt_secret"] = settings.secret()
        values["tiers"] = {k: asdict(v) for k, v in settings.tiers.items()}
        env = {k: v for k, v in os.environ.items() if not k.startswith("BITNET_")}
        self.process = subprocess.Popen([sys.executable, "-c", _SERVER, json.dumps(values)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.url = ""
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait for the server to print its URL (several servers start in parallel when
        created with ``wait=False`` and then waited for one by one)."""
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.process.kill()
            raise RuntimeError("a server did not start")

    def ws_url(self, path: str) -> str:
        return "ws" + self.url[len("http"):] + path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def close(self) -> None:
        self.begin_close()
        self.finish_close()

    def begin_close(self) -> None:
        """Ask the server to stop (it drains), without waiting: close several in parallel."""
        assert self.process.stdin is not None
        if not self.process.stdin.closed:
            self.process.stdin.close()

    def finish_close(self) -> None:
        assert self.process.stdout is not None
        self.begin_close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
