"""``serve()`` as the CLI runs it, in a child process: start-up failure exit code, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import httpx
import pytest

WAIT = 20.0

# The child: a Starlette app whose lifespan and handler print what happens. ``/slow``
# finishes only once the server has stopped accepting connections, i.e. mid-shutdown.
CHILD = textwrap.dedent(
    """
    import asyncio, contextlib, sys
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from bitnet_sdk.server.asgi.tornado_app import serve

    FAIL = sys.argv[1] == "fail"
    port = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if FAIL:
            raise RuntimeError("cannot open the database")
        yield
        print("lifespan-shutdown", flush=True)

    async def slow(request):
        print("entered", flush=True)
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port["port"])
            except ConnectionRefusedError:
                return PlainTextResponse("finished during shutdown")
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.01)

    def started(server):
        port["port"] = server.port
        print("listening", server.url, flush=True)

    app = Starlette(routes=[Route("/slow", slow)], lifespan=lifespan)
    serve(app, "127.0.0.1", 0, on_started=started, shutdown_timeout=15)
    print("exited", flush=True)
    """
)


def run_child(mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_startup_failure_exits_non_zero_without_listening() -> None:
    child = run_child("fail")
    out, err = child.communicate(timeout=WAIT)
    assert child.returncode != 0
    assert "listening" not in out
    assert "LifespanStartupError" in err and "cannot open the database" in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_drains_inflight_requests_and_runs_lifespan_shutdown() -> None:
    child = run_child("ok")
    try:
        assert child.stdout is not None
        first = child.stdout.readline().split()
        assert first[:1] == ["listening"], first
        url = first[1]
        result: dict[str, Any] = {}
        client = threading.Thread(
            target=lambda: result.update(r=httpx.get(url + "/slow", timeout=WAIT))
        )
        client.start()
        assert child.stdout.readline().strip() == "entered"
        child.send_signal(signal.SIGTERM)
        client.join(WAIT)
        out, err = child.communicate(timeout=WAIT)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert result["r"].status_code == 200
    assert result["r"].text == "finished during shutdown"
    assert out.split() == ["lifespan-shutdown", "exited"], err
    assert child.returncode == 0, err
