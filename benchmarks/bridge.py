"""Throughput of one ASGI app on our Tornado bridge vs. on uvicorn, measured in the same run.

Each server runs in its own process on loopback; this process is the load generator: N
concurrent keep-alive connections send a fixed number of ``GET`` requests (after a warm-up)
and the rate is reported per server, with the ratio bridge/uvicorn. Rounds alternate the
two servers so machine noise hits both; the median round counts.

    python benchmarks/bridge.py                       # the real app, GET /v1/health
    python benchmarks/bridge.py --app inline --path /v1/health --client raw
    python benchmarks/bridge.py --app mypkg.app:make --requests 5000 --rounds 5

``--app``: ``module:attr`` (an ASGI app, or a zero-argument factory such as
``bitnet_sdk.server.app:create_app``, the default), ``inline`` (a one-operation
Connexion app, also the fallback when the default cannot be imported) or ``bare`` (a raw
ASGI app: the servers' own overhead). ``--client``:
``raw`` (default: a minimal asyncio HTTP/1.1 keep-alive client) or ``httpx``
(``httpx.AsyncClient``). httpx costs ~1 ms of CPU per request, so on a small machine it
measures itself (measured here: ~850 req/s at most against uvicorn, vs ~2.6k with ``raw``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

DEFAULT_APP = "bitnet_sdk.server.app:create_app"
SERVERS = ("bridge", "uvicorn")


# -- the app under test (runs in the server processes) -------------------------------------------


def inline_app() -> Any:
    """A Connexion app with one trivial operation: ``GET /v1/health`` → ``{"status": "ok"}``."""
    import connexion
    from connexion.resolver import Resolver

    spec = {
        "openapi": "3.0.3",
        "info": {"title": "bridge benchmark", "version": "1"},
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            }
        },
    }

    async def health() -> tuple[dict[str, str], int]:  # async: no worker-thread hop
        return {"status": "ok"}, 200

    app = connexion.AsyncApp(__name__)
    app.add_api(spec, base_path="/v1", resolver=Resolver(function_resolver=lambda _: health))
    return app


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app (no framework): measures the servers' own cost per request."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


def load_app(spec: str) -> Any:
    if spec == "inline":
        return inline_app()
    if spec == "bare":
        return bare_app
    module_name, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr or "app")
    except (ImportError, AttributeError) as error:
        if spec != DEFAULT_APP:
            raise
        print(f"# {spec} not importable ({error}); using the inline app", file=sys.stderr)
        return inline_app()
    return target() if inspect.isfunction(target) else target


def run_server(kind: str, app_spec: str, port: int) -> None:
    app = load_app(app_spec)
    if kind == "bridge":
        from bitnet_sdk.server.asgi.tornado_app import serve

        serve(app, "127.0.0.1", port, shutdown_timeout=2)
    else:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- load generators -----------------------------------------------------------------------------


async def hammer_httpx(url: str, total: int, concurrency: int) -> float:
    """One ``httpx.AsyncClient`` (one connection) per worker: a shared pool of 16 is slower."""
    import httpx

    remaining = total

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            response = await client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(limits=limits, timeout=30.0) for _ in range(concurrency)]
    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        return time.perf_counter() - start
    finally:
        for client in clients:
            await client.aclose()


async def _raw_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> None:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {head[:200]!r}")
    headers = head.lower()
    if b"content-length:" in headers:
        length = int(headers.split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        return
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


async def hammer_raw(url: str, total: int, concurrency: int) -> float:
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    request = f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: */*\r\n\r\n".encode()
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]
    remaining = total

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await _raw_get(reader, writer, request)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker(r, w) for r, w in connections))
        return time.perf_counter() - start
    finally:
        for _, writer in connections:
            writer.close()


HAMMERS = {"httpx": hammer_httpx, "raw": hammer_raw}


# -- orchestration -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, child: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"server exited with {child.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU time of a process (Linux ``/proc``), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, args: argparse.Namespace, env: dict[str, str]) -> tuple[float, float | None]:
    """Start one server process, warm it up, time ``args.requests`` requests.

    Returns (requests per second, server CPU microseconds per request). The CPU figure is
    steadier than the rate on a shared machine: it does not count time spent waiting.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}{args.path}"
    command = [sys.executable, __file__, "--serve", kind, "--app", args.app, "--port", str(port)]
    child = subprocess.Popen(command, env=env)
    try:
        wait_ready(url, child)
        hammer = HAMMERS[args.client]
        asyncio.run(hammer(url, args.warmup, args.concurrency))
        cpu_before = cpu_seconds(child.pid)
        elapsed = asyncio.run(hammer(url, args.requests, args.concurrency))
        cpu_after = cpu_seconds(child.pid)
        cpu = None
        if cpu_before is not None and cpu_after is not None:
            cpu = 1e6 * (cpu_after - cpu_before) / args.requests
        return args.requests / elapsed, cpu
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default=DEFAULT_APP, help="module:attr, 'inline' or 'bare'")
    parser.add_argument("--path", default="/v1/health")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", choices=sorted(HAMMERS), default="raw")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        run_server(args.serve, args.app, args.port)
        return

    with tempfile.TemporaryDirectory(prefix="bitnet-bench-") as data_dir:
        env = dict(os.environ, BITNET_DATA_DIR=data_dir)
        rates: dict[str, list[float]] = {kind: [] for kind in SERVERS}
        cpus: dict[str, list[float]] = {kind: [] for kind in SERVERS}
        for round_ in range(1, args.rounds + 1):
            for kind in SERVERS:
                rate, cpu = measure(kind, args, env)
                rates[kind].append(rate)
                if cpu is not None:
                    cpus[kind].append(cpu)
                cpu_text = f"{cpu:7.0f} µs CPU/request" if cpu is not None else ""
                print(f"round {round_}  {kind:8s} {rate:8.0f} req/s  {cpu_text}", flush=True)
    median = {kind: statistics.median(values) for kind, values in rates.items()}
    print(
        f"\nGET {args.path}  app={args.app}  client={args.client}  "
        f"connections={args.concurrency}  requests={args.requests}  rounds={args.rounds}"
    )
    for kind in SERVERS:
        print(
            f"  {kind:8s} median {median[kind]:8.0f} req/s   (rounds: "
            + ", ".join(f"{value:.0f}" for value in rates[kind])
            + ")"
        )
    print(f"  ratio bridge/uvicorn: {median['bridge'] / median['uvicorn']:.2f}")
    if all(cpus.values()):
        cpu = {kind: statistics.median(values) for kind, values in cpus.items()}
        print(
            f"  server CPU per request: bridge {cpu['bridge']:.0f} µs, uvicorn "
            f"{cpu['uvicorn']:.0f} µs (ratio uvicorn/bridge {cpu['uvicorn'] / cpu['bridge']:.2f})"
        )


if __name__ == "__main__":
    main()
