"""``bitnet serve --processes N``: several server processes sharing one listening socket.

Python runs one request handler at a time per process, so one process uses one core.
This module pre-forks: the parent prepares the store once (migrations, first
administrator, demo model), binds the port once, then forks ``N`` children that each
build the app and accept connections from the shared socket (the kernel hands each
connection to one of them). The parent only supervises:

* a child that exits while the server is running is replaced (a child that keeps
  dying right after start-up stops the whole server instead of looping);
* SIGTERM or SIGINT to the parent is forwarded as SIGTERM to every child, which stops
  gracefully (stops accepting, drains in-flight requests and streams, closes WebSockets);
  a second signal is forwarded too and makes the children cancel what is still running;
* the parent exits once every child has exited.

Children run in their own process group, so a terminal's Ctrl-C reaches only the
parent (which forwards it once), and each child stops by itself if the parent dies.
State that is not in the database or the data directory is per process (the loaded
model cache, in-memory metrics); shared limits need the database or Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from bitnet_sdk.config import Settings

__all__ = ["Supervisor", "serve_processes"]

log = logging.getLogger(__name__)

#: A child that exits sooner than this after its start counts as a crash at start-up.
_EARLY_EXIT_S = 5.0
#: Early exits in a row after which the supervisor gives up.
_MAX_EARLY_EXITS = 3


def serve_processes(settings: Settings, websocket_routes: Callable[[Any], list[Any]],
                    say: Callable[[str], None] = print) -> int:
    """Bind once, run ``settings.processes`` children; returns the exit status.

    Call after the store is prepared (:func:`bitnet_sdk.server.run.prepare`), before any
    thread starts. ``websocket_routes(app)``: the Tornado routes served beside the app.
    """
    from tornado.netutil import bind_sockets

    from bitnet_sdk.server import app as _app  # noqa: F401  (import once, shared by the forks)

    if threading.active_count() > 1:  # forking a process with threads copies held locks
        raise RuntimeError("serve --processes must fork before any thread starts")
    sockets = bind_sockets(settings.port, settings.host)
    port = sockets[0].getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{port}"
    parent = os.getpid()

    def child() -> None:
        _serve_child(settings, sockets, parent, websocket_routes)

    supervisor = Supervisor(child, settings.processes)
    say(f"BitNet SDK serving on {url} with {settings.processes} processes  (docs: {url}/v1/docs)")
    try:
        return supervisor.run()
    finally:
        for sock in sockets:
            sock.close()


def _serve_child(settings: Settings, sockets: list[socket.socket], parent: int,
                 websocket_routes: Callable[[Any], list[Any]]) -> None:
    """One server process: build the app, serve on the inherited sockets until told to stop."""
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.tornado_app import serve_async

    app = create_app(settings)

    async def main() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_parent(parent, stop))
        try:
            await serve_async(app, settings.host, settings.port, sockets=sockets,
                              websocket_routes=websocket_routes(app), stop_event=stop,
                              max_body_size=settings.max_upload_bytes + (1 << 20))
        finally:
            watcher.cancel()

    asyncio.run(main())


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Stop gracefully when the supervisor is gone (killed without forwarding a signal)."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("supervisor %d is gone: stopping", parent)
    stop.set()


class Supervisor:
    """Runs ``count`` forked children of ``target`` and keeps them running until a signal.

    ``target`` runs in the child; the child exits with 0 when it returns, 1 when it raises.
    """

    def __init__(self, target: Callable[[], None], count: int) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.target = target
        self.count = count
        self.children: dict[int, float] = {}  # pid -> start time
        self.stopping = False
        self._early_exits = 0

    def run(self) -> int:
        """Start the children, supervise them, return 0 after a clean stop (1 if they crashed)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        status = 0
        try:
            for _ in range(self.count):
                self._spawn()
            while self.children:
                try:
                    pid, code = os.waitpid(-1, 0)
                except ChildProcessError:
                    break
                status = max(status, self._reap(pid, code))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.setpgid(0, 0)
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                self.target()
                code = 0
            except BaseException:
                log.exception("server process %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = time.monotonic()
        log.info("started server process %d", pid)

    def _reap(self, pid: int, code: int) -> int:
        started = self.children.pop(pid, None)
        if started is None:
            return 0
        exit_code = os.waitstatus_to_exitcode(code)
        if self.stopping:
            log.info("server process %d exited (%d)", pid, exit_code)
            return 0 if exit_code in (0, -signal.SIGTERM) else 1
        log.warning("server process %d exited unexpectedly (%d): restarting", pid, exit_code)
        if time.monotonic() - started < _EARLY_EXIT_S:
            self._early_exits += 1
            if self._early_exits >= _MAX_EARLY_EXITS:
                log.error("server processes keep failing at start-up: stopping")
                self._signal_children(signal.SIGTERM)
                self.stopping = True
                return 1
        else:
            self._early_exits = 0
        self._spawn()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._signal_children(signal.SIGTERM)

    def _signal_children(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
