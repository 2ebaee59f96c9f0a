"""API throughput: 1 vs N server processes, SQLite vs PostgreSQL vs PostgreSQL + Redis.

Each configuration is a real ``bitnet serve`` (``--processes``, ``--db``, ``--redis``) on a
free loopback port with a fresh data folder and database and the demo model; the first
administrator (tier ``enterprise``) logs in once and its bearer token is sent with every
request, so every request is authenticated, rate-limited and metered like production.

Workloads, each at every ``--connections`` count:

* ``GET /v1/auth/me`` (authentication, rate limit, usage record);
* ``POST /v1/inference`` of one token on the demo model (the same, plus the model queue);
* JWT validation alone, in this process (``verify_access_token``: signature, claims and
  the revocation lookup in the database), median and p99;
* with ``--ws N`` (default 500): N WebSocket connections opened at once on the first and the
  last configuration, each starting one generation of ``--ws-tokens`` tokens; the table gives
  how many finished, the p50/p95 time to the first token and the p95 gap between messages.

The HTTP load comes from ``hey`` when it is installed (a Go process: ``go install
github.com/rakyll/hey@v0.1.4``), else from the built-in asyncio load generator (httpx, one
keep-alive connection per simulated client); ``--client`` chooses, and the output says which
ran. The built-in generator runs in this Python process and takes CPU from the servers on a
small machine. Rounds interleave the configurations (all servers stay up), so a noisy
neighbour hits them alike; the tables show the median per configuration and its ratio to the
first row, and the load average when the run ended.

    BITNET_TEST_POSTGRES_URL=postgresql://… BITNET_TEST_REDIS_URL=redis://… \\
        python benchmarks/api_throughput.py --seconds 5 --rounds 3 --connections 16,64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bitnet_sdk.store.testing import temporary_database_url

#: Server settings for the WebSocket load (one user holds every connection).
_SERVER_ENV = {"BITNET_WS_MAX_CONNECTIONS_PER_USER": "100000", "BITNET_MODEL_QUEUE_SIZE": "4096"}


class Server:
    """One ``bitnet serve`` in a subprocess; ``url``, ``token`` and ``model`` once started."""

    def __init__(self, name: str, data_dir: Path, processes: int, db: str, redis: str) -> None:
        self.name = name
        args = [sys.executable, "-m", "bitnet_sdk.cli", "serve", "--port", "0",
                "--data-dir", str(data_dir), "--processes", str(processes), "--workers", "0"]
        if db:
            args += ["--db", db]
        if redis:
            args += ["--redis", redis]
        env = {**os.environ, **_SERVER_ENV}
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, start_new_session=True, env=env)
        found: dict[str, str] = {}
        assert self.process.stdout is not None
        for line in self.process.stdout:
            for key, pattern in (("email", r"email:\s+(\S+)"), ("password", r"password:\s+(\S+)"),
                                 ("model", r"demo model (\S+)\."),
                                 ("url", r"serving on (http://\S+)")):
                if m := re.search(pattern, line):
                    found[key] = m.group(1)
            if "url" in found:
                break
        if "url" not in found or "model" not in found:
            raise RuntimeError(f"{name}: server did not start")
        self.url, self.model = found["url"], found["model"]
        credentials = {"email": found["email"], "password": found["password"]}
        self.token = httpx.post(self.url + "/v1/auth/login", json=credentials,
                                timeout=60).json()["access_token"]
        for _ in range(2 * processes):  # load the model in (most of) the processes
            self.infer_once()

    def infer_once(self) -> None:
        r = httpx.post(self.url + "/v1/inference", json=self.inference_body(),
                       headers={"Authorization": f"Bearer {self.token}"}, timeout=120)
        r.raise_for_status()

    def inference_body(self, tokens: int = 1) -> dict[str, object]:
        return {"model": self.model, "prompt": "Hello", "max_tokens": tokens, "temperature": 0}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass(frozen=True)
class Workload:
    name: str
    method: str
    path: str
    inference: bool = False

    def body(self, server: Server) -> bytes | None:
        return json.dumps(server.inference_body()).encode() if self.inference else None


WORKLOADS = (Workload("GET /v1/auth/me", "GET", "/v1/auth/me"),
             Workload("POST /v1/inference (1 token)", "POST", "/v1/inference", inference=True))


def _hey(hey: str, server: Server, work: Workload, seconds: float,
         connections: int) -> tuple[float, int]:
    """Requests/s and non-2xx count of one ``hey`` run."""
    args = [hey, "-z", f"{seconds}s", "-c", str(connections), "-m", work.method,
            "-H", f"Authorization: Bearer {server.token}"]
    body = work.body(server)
    if body is not None:
        args += ["-T", "application/json", "-d", body.decode()]
    out = subprocess.run([*args, server.url + work.path], capture_output=True, text=True,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    bad = sum(int(n) for code, n in codes.items() if not code.startswith("2"))
    return rps, bad


async def _python_load(server: Server, work: Workload, seconds: float,
                       connections: int) -> tuple[float, int]:
    """Requests/s and non-2xx count: ``connections`` clients looping for ``seconds``."""
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    body = work.body(server)
    done = bad = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits,
                                 timeout=120) as client:
        deadline = time.perf_counter() + seconds

        async def one_client() -> None:
            nonlocal done, bad
            while time.perf_counter() < deadline:
                r = await client.request(work.method, work.path, content=body)
                done += 1
                bad += not r.is_success

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return done / elapsed, bad


async def _websockets(server: Server, count: int, tokens: int) -> dict[str, float]:
    """``count`` connections, one generation each; finished count and latency percentiles."""
    from websockets.asyncio.client import connect

    url = "ws" + server.url[len("http"):] + "/v1/inference/ws"
    first: list[float] = []
    gaps: list[float] = []
    finished = 0
    ready = asyncio.Event()
    opened = 0

    async def one(index: int) -> None:
        nonlocal finished, opened
        async with connect(url, subprotocols=["bearer", server.token],  # type: ignore[list-item]
                           open_timeout=120, max_queue=None) as ws:
            while json.loads(await ws.recv())["type"] != "ready":
                pass
            opened += 1
            if opened == count:
                ready.set()
            await ready.wait()  # every connection open before any generation starts
            sent = last = time.perf_counter()
            await ws.send(json.dumps({"type": "generate", "request_id": f"r{index}",
                                      "request": server.inference_body(tokens)}))
            while True:
                message = json.loads(await ws.recv())
                now = time.perf_counter()
                if message["type"] == "token":
                    (first.append(now - sent) if last == sent else gaps.append(now - last))
                    last = now
                if message["type"] in ("done", "error"):
                    finished += message["type"] == "done"
                    return

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    failed = sum(isinstance(r, BaseException) for r in results)

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0

    return {"finished": finished, "failed": failed, "ttft_p50": pct(first, 50),
            "ttft_p95": pct(first, 95), "gap_p95": pct(gaps, 95)}


@contextlib.contextmanager
def _servers(root: Path, processes: list[int]) -> Iterator[list[Server]]:
    postgres, redis = os.environ.get("BITNET_TEST_POSTGRES_URL"), os.environ.get("BITNET_TEST_REDIS_URL")
    stores = [("sqlite", False)]
    if postgres:
        stores.append(("postgres", False))
        if redis:
            stores.append(("postgres", True))
    started: list[Server] = []
    with contextlib.ExitStack() as stack:
        try:
            for kind, with_redis in stores:
                for n in processes:
                    name = f"{'PostgreSQL' if kind == 'postgres' else 'SQLite'}" \
                           f"{' + Redis' if with_redis else ''}, {n} process{'es' if n > 1 else ''}"
                    folder = root / f"s{len(started)}"
                    db = stack.enter_context(temporary_database_url(kind, folder)) \
                        if kind == "postgres" else ""
                    started.append(Server(name, folder / "data", n, db,
                                          (redis or "") if with_redis else ""))
            yield started
        finally:
            for server in started:
                server.stop()


def _jwt_validation(root: Path, iterations: int = 2000) -> list[str]:
    """Median and p99 of ``verify_access_token`` (signature, claims, revocation lookup)
    in this process, per database kind."""
    from bitnet_sdk import auth
    from bitnet_sdk.config import Settings
    from bitnet_sdk.server.lifecycle import open_store

    kinds = ["sqlite"] + (["postgres"] if os.environ.get("BITNET_TEST_POSTGRES_URL") else [])
    lines = []
    for kind in kinds:
        with temporary_database_url(kind, root / f"jwt-{kind}") as url:
            settings = Settings(data_dir=root / f"jwt-{kind}", database_url=url,
                                jwt_secret="benchmark-secret-" + "x" * 32)
            db = open_store(url)
            try:
                user = auth.create_user(f"jwt-{kind}@example.com", "a long enough password 1",
                                        settings=settings)
                token, _ = auth.issue_access_token(user, user.scopes, settings)
                times = []
                for _ in range(iterations):
                    start = time.perf_counter()
                    auth.verify_access_token(token, settings)
                    times.append((time.perf_counter() - start) * 1000)
            finally:
                db.close()
        q = statistics.quantiles(times, n=100)
        lines.append(f"  {kind:<10} median {statistics.median(times):.3f} ms, p99 {q[98]:.3f} ms "
                     f"({iterations} validations)")
    return lines


def _load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="16,64", help="comma-separated client counts")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--client", choices=("auto", "hey", "python"), default="auto")
    parser.add_argument("--ws", type=int, default=500, help="WebSocket connections (0: none)")
    parser.add_argument("--ws-tokens", type=int, default=16)
    args = parser.parse_args()
    hey = shutil.which("hey") or os.environ.get("HEY", "")
    if args.client == "hey" and not hey:
        print("needs hey: go install github.com/rakyll/hey@v0.1.4 (or HEY=/path/to/hey)")
        return 2
    use_hey = bool(hey) and args.client != "python"
    client = f"hey ({hey})" if use_hey else "built-in asyncio + httpx load generator"
    connections = [int(n) for n in args.connections.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        print("JWT validation (in process, with the revocation lookup):")
        print("\n".join(_jwt_validation(Path(tmp))), flush=True)
    with tempfile.TemporaryDirectory() as tmp, \
            _servers(Path(tmp), [int(n) for n in args.processes.split(",")]) as servers:
        print(f"load: {client}; {args.rounds} rounds x {args.seconds:g} s, interleaved; "
              f"load average at start {_load_average()}", flush=True)
        for work in WORKLOADS:
            for conns in connections:
                rates: dict[str, list[float]] = {s.name: [] for s in servers}
                bad = 0
                for _ in range(args.rounds):
                    for server in servers:
                        rps, failed = (_hey(hey, server, work, args.seconds, conns) if use_hey
                                       else asyncio.run(_python_load(server, work, args.seconds,
                                                                     conns)))
                        rates[server.name].append(rps)
                        bad += failed
                base = statistics.median(rates[servers[0].name])
                print(f"\n{work.name}, {conns} connections: median req/s (ratio to the first row)")
                for name, values in rates.items():
                    median = statistics.median(values)
                    print(f"  {name:<34} {median:8.0f} req/s   x{median / base:4.2f}")
                print(f"  (non-2xx answers: {bad}; load average {_load_average()})", flush=True)
        if args.ws:
            print(f"\n{args.ws} WebSocket connections, one {args.ws_tokens}-token generation each")
            for server in dict.fromkeys([servers[0], servers[-1]]):
                ws = asyncio.run(_websockets(server, args.ws, args.ws_tokens))
                print(f"  {server.name:<34} finished {ws['finished']:.0f}/{args.ws} "
                      f"(failed {ws['failed']:.0f}); first token p50 {ws['ttft_p50']:.0f} ms, "
                      f"p95 {ws['ttft_p95']:.0f} ms; message gap p95 {ws['gap_p95']:.0f} ms "
                      f"(load average {_load_average()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
