"""The per-user WebSocket cap holds across server processes.

Attack: open sockets until refused, on a server run as ``bitnet serve --processes 2``.
With a cap counted per process, a user got the cap once per process (the kernel spreads
connections over the processes); counted in the shared database, the cap is the cap.
The real CLI in a subprocess, sockets opened from several threads at once so that both
processes take some.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.cli.test_serve_processes import Served, _read_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pre-forking needs fork()")

CAP = 3
ATTEMPTS = 12


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = {**os.environ, "BITNET_PROCESSES": "2", "BITNET_WORKERS": "0",
           "BITNET_WS_MAX_CONNECTIONS_PER_USER": str(CAP)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bitnet_sdk.cli", "serve", "--port", "0", "--no-demo",
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        email = _read_until(process, r"email:\s+(\S+)", lines).group(1)
        password = _read_until(process, r"password:\s+(\S+)", lines).group(1)
        url = _read_until(process, r"serving on (http://\S+) with 2 processes", lines).group(1)
        login = httpx.post(url + "/v1/auth/login", json={"email": email, "password": password},
                           timeout=60)
        assert login.status_code == 200, login.text
        yield Served(process, url, login.json()["access_token"])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _open(served: Served, stack: contextlib.ExitStack) -> tuple[ClientConnection, bool]:
    """A socket (closed with ``stack``) and whether the server accepted it (``ready``) or
    closed it with 4429."""
    ws = stack.enter_context(connect(served.url.replace("http://", "ws://") + "/v1/inference/ws",
                                     subprotocols=["bearer", served.token]))
    try:
        message = json.loads(ws.recv(timeout=60))
    except ConnectionClosed:
        assert ws.close_code == 4429, ws.close_code
        return ws, False
    assert message["type"] == "ready", message
    return ws, True


def test_the_connection_cap_is_one_cap_for_all_processes(served: Served) -> None:
    start = threading.Barrier(ATTEMPTS)
    with contextlib.ExitStack() as stack:

        def attempt(_: int) -> tuple[ClientConnection, bool]:
            start.wait()
            return _open(served, stack)

        with ThreadPoolExecutor(ATTEMPTS) as pool:
            sockets = list(pool.map(attempt, range(ATTEMPTS)))
        assert sum(ok for _, ok in sockets) == CAP
        # Closing one frees its place, whichever process holds it.
        next(ws for ws, ok in sockets if ok).close()
        for _ in range(50):  # the place is freed in the background: try until it is
            opened, ok = _open(served, stack)
            if ok:
                break
            opened.close()
        assert ok
