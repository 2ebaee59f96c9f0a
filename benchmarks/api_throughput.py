"""Authenticated API throughput: 1 vs N server processes, SQLite vs PostgreSQL vs PostgreSQL + Redis.

Each configuration is a real ``bitnet serve`` (``--processes``, ``--db``, ``--redis``) on a
free loopback port with a fresh data folder and database; the first administrator (tier
``enterprise``, 100,000 requests/hour) logs in once and its bearer token is sent with every
request. The load comes from ``hey`` (a separate Go process: ``go install
github.com/rakyll/hey@v0.1.4``) so the client does not compete for the servers' interpreter.
Every request is authenticated, rate-limited and metered (usage record) like production.

Rounds interleave the configurations (all servers stay up), so a noisy neighbour hits them
alike; the table shows the median requests/s per configuration and its ratio to the first.

    BITNET_TEST_POSTGRES_URL=postgresql://… BITNET_TEST_REDIS_URL=redis://… \\
        python benchmarks/api_throughput.py --seconds 5 --rounds 3 --connections 16
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from bitnet_sdk.store.testing import temporary_database_url


class Server:
    """One ``bitnet serve`` in a subprocess; ``url`` and ``token`` once started."""

    def __init__(self, name: str, data_dir: Path, processes: int, db: str, redis: str) -> None:
        self.name = name
        args = [sys.executable, "-m", "bitnet_sdk.cli", "serve", "--port", "0", "--no-demo",
                "--data-dir", str(data_dir), "--processes", str(processes), "--workers", "0"]
        if db:
            args += ["--db", db]
        if redis:
            args += ["--redis", redis]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, start_new_session=True)
        found: dict[str, str] = {}
        assert self.process.stdout is not None
        for line in self.process.stdout:
            for key, pattern in (("email", r"email:\s+(\S+)"), ("password", r"password:\s+(\S+)"),
                                 ("url", r"serving on (http://\S+)")):
                if m := re.search(pattern, line):
                    found[key] = m.group(1)
            if "url" in found:
                break
        if "url" not in found:
            raise RuntimeError(f"{name}: server did not start")
        self.url = found["url"]
        credentials = {"email": found["email"], "password": found["password"]}
        self.token = httpx.post(self.url + "/v1/auth/login", json=credentials,
                                timeout=60).json()["access_token"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _hey(hey: str, server: Server, path: str, seconds: float, connections: int) -> tuple[float, int]:
    """Requests/s and non-2xx count of one ``hey`` run."""
    out = subprocess.run(
        [hey, "-z", f"{seconds}s", "-c", str(connections), "-H",
         f"Authorization: Bearer {server.token}", server.url + path],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    bad = sum(int(n) for code, n in codes.items() if not code.startswith("2"))
    return rps, bad


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--path", default="/v1/auth/me", help="authenticated GET to measure")
    args = parser.parse_args()
    hey = shutil.which("hey") or os.environ.get("HEY", "")
    if not hey:
        print("needs hey: go install github.com/rakyll/hey@v0.1.4 (or HEY=/path/to/hey)")
        return 2
    with tempfile.TemporaryDirectory() as tmp, \
            _servers(Path(tmp), [int(n) for n in args.processes.split(",")]) as servers:
        rates: dict[str, list[float]] = {s.name: [] for s in servers}
        bad = 0
        for _ in range(args.rounds):
            for server in servers:
                rps, failed = _hey(hey, server, args.path, args.seconds, args.connections)
                rates[server.name].append(rps)
                bad += failed
        base = statistics.median(rates[servers[0].name])
        print(f"GET {args.path}, {args.connections} connections, {args.rounds} x {args.seconds:g} s "
              f"interleaved; median req/s (ratio to the first row)")
        for name, values in rates.items():
            median = statistics.median(values)
            print(f"  {name:<34} {median:8.0f} req/s   x{median / base:4.2f}")
        if bad:
            print(f"  (non-2xx answers: {bad})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
