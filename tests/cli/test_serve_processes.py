"""``bitnet serve --processes 2``: two server processes answer on one port, a crashed one is
replaced, and SIGTERM stops them all cleanly.

The real CLI runs in a subprocess on a free port; ``GET /v1/status`` says which process
answered (``process_id``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pre-forking needs fork()")

_START_S = 120.0


class Served:
    def __init__(self, process: subprocess.Popen[str], url: str, token: str) -> None:
        self.process, self.url, self.token = process, url, token
        self.headers = {"Authorization": f"Bearer {token}"}


def _read_until(process: subprocess.Popen[str], pattern: str, lines: list[str]) -> re.Match[str]:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    errors = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"server exited before printing {pattern!r}:\n{''.join(lines)}{errors}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = {**os.environ, "BITNET_PROCESSES": "2", "BITNET_WORKERS": "0"}
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


def _pids(served: Served, requests: int) -> set[int]:
    """``process_id`` of the answers to ``requests`` status requests from 8 threads, each on
    a new connection (the kernel hands each connection to one process)."""
    seen: set[int] = set()
    lock = threading.Lock()

    def ask() -> None:
        for _ in range(requests // 8):
            r = httpx.get(served.url + "/v1/status", headers=served.headers, timeout=60)
            assert r.status_code == 200, r.text
            with lock:
                seen.add(r.json()["process_id"])

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return seen


def _children(parent: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_two_processes_share_the_port_restart_and_stop_on_sigterm(served: Served) -> None:
    children = _children(served.process.pid)
    assert len(children) == 2
    seen = _pids(served, 160)
    assert seen == children, "both server processes answer on the one port"

    # A crashed process is replaced; the survivor keeps answering meanwhile.
    crashed = min(children)
    os.kill(crashed, signal.SIGKILL)
    deadline = time.monotonic() + _START_S
    while (now := _children(served.process.pid)) in (children, children - {crashed}):
        assert time.monotonic() < deadline, "no replacement process was started"
        time.sleep(0.2)
    assert crashed not in now and len(now) == 2
    while not (_pids(served, 16) & (now - children)):
        assert time.monotonic() < deadline, "the replacement never answered"
    # SIGTERM to the supervisor: every process stops gracefully and it exits 0.
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=_START_S) == 0
    for pid in now:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
