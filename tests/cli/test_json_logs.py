"""``bitnet serve --log-format json``: a real server process, its log lines read from stderr.

Every line is one JSON object; each access line carries the request id, user id, route,
status and latency; the request id of the request that created a job is on the job's and
its webhook's lines; no token or password is ever logged.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.test_operator_mistakes import _env
from tests.support.jobs import wait_job
from tests.support.webhooks import Receiver


class Served:
    """A ``bitnet serve`` process: its URL, the admin password it printed, and :meth:`stop`."""

    def __init__(self, proc: subprocess.Popen[str], url: str, password: str,
                 readers: list[threading.Thread], err: list[str]) -> None:
        self.proc, self.url, self.password = proc, url, password
        self._readers, self._err = readers, err

    def stop(self) -> str:
        """Stop the server gracefully (SIGINT); everything it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        for reader in self._readers:
            reader.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return "".join(self._err)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bitnet_sdk.cli", "serve", "--port", "0", "--log-format", "json",
         "--data-dir", str(tmp_path / "data"), "--backend", "numpy"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env=_env({"BITNET_WEBHOOK_ALLOW_PRIVATE": "1"}))
    assert proc.stdout is not None and proc.stderr is not None
    out: queue.Queue[str] = queue.Queue()
    err: list[str] = []
    readers = [threading.Thread(target=lambda: [out.put(line) for line in proc.stdout], daemon=True),
               threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    server = Served(proc, "", "", readers, err)
    try:
        while not server.url:
            line = out.get(timeout=120)
            if line.strip().startswith("password:"):
                server.password = line.split(":", 1)[1].strip()
            if "serving on" in line:
                server.url = line.split("serving on ", 1)[1].split()[0]
        yield server
    finally:
        server.stop()


def test_json_logs_tie_a_request_to_its_job_and_webhook(served: Served) -> None:
    login = httpx.post(served.url + "/v1/auth/login",
                       json={"email": "admin@localhost", "password": served.password})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    models = httpx.get(served.url + "/v1/models", headers={**auth, "X-Request-ID": "req_listing"})
    assert models.status_code == 200
    me = httpx.get(served.url + "/v1/account", headers=auth).json()
    demo = models.json()["data"][0]["id"]
    with Receiver([200]) as receiver:
        batch = httpx.post(served.url + "/v1/inference/batch", timeout=60,
                           headers={**auth, "X-Request-ID": "req_batch_1"},
                           json={"requests": [{"model": demo, "prompt": "Hi", "max_tokens": 2}],
                                 "webhook_url": receiver.url + "/hook"})
        assert batch.status_code == 202, batch.text
        assert wait_job(served.url, batch.headers["location"], auth)["status"] == "succeeded"
        receiver.wait_for(1)
    job_id = batch.json()["id"]
    stderr = served.stop()
    records = _records(stderr)
    access = [r for r in records if r.get("logger") == "bitnet_sdk.server.access"]
    listing = next(r for r in access if r.get("request_id") == "req_listing")
    assert listing["user_id"] == me["id"]
    assert listing["route"] == "listModels" and listing["status"] == 200
    assert listing["method"] == "GET" and listing["path"] == "/v1/models"
    assert isinstance(listing["latency_ms"], float)
    for record in access:  # every access line has them (the user only when authenticated)
        assert {"request_id", "route", "status", "latency_ms"} <= set(record), record
    job_lines = [r for r in records if r.get("job_id") == job_id]
    assert any(r["message"].startswith("webhook ") for r in job_lines), job_lines  # its delivery
    assert any(r["message"] == f"job {job_id} succeeded" for r in job_lines), job_lines
    assert all(r.get("request_id") == "req_batch_1" for r in job_lines), job_lines
    assert token not in stderr and served.password not in stderr


def _records(stderr: str) -> list[dict[str, Any]]:
    records = []
    for line in stderr.splitlines():
        if line.strip():
            records.append(json.loads(line))  # every line is one JSON object
    return records
