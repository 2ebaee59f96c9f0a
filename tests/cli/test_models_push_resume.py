"""``bitnet models push`` resumes: after a connection cut mid-upload it continues from the
server's offset by itself, and after the server was killed with ``-9`` mid-upload and
restarted, ``--model ID`` continues from the bytes the server had acknowledged.

The CLI and the killed server are real processes; the cut is made by a loopback TCP proxy
that closes the first upload connection after a set number of bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bitnet_sdk.testing.synthetic import build_model
from tests.cli.test_operator_mistakes import bitnet, no_traceback

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kills a server with SIGKILL")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("push") / "tiny.gguf", seed=5)


class CuttingProxy:
    """Forwards loopback TCP to ``upstream``; the first connection that sends a ``PUT`` is
    closed after ``cut_after`` bytes of it went upstream."""

    def __init__(self, upstream: tuple[str, int], cut_after: int) -> None:
        self.upstream, self.cut_after = upstream, cut_after
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()
        self._pump(client, upstream, self)

    def _pump(self, src: socket.socket, dst: socket.socket, watch: CuttingProxy | None) -> None:
        sent, cutting = 0, False
        try:
            while data := src.recv(65536):
                if watch is not None and sent == 0 and data.startswith(b"PUT ") and not self.cuts:
                    self.cuts, cutting = 1, True
                if cutting and sent + len(data) >= self.cut_after:
                    dst.sendall(data[: self.cut_after - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._listener.close()


def test_push_resumes_by_itself_after_a_cut_connection(live_server, customer, tmp_path: Path,
                                                       model_file: Path) -> None:
    data = model_file.read_bytes()
    port = int(live_server.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(("127.0.0.1", port), cut_after=len(data) // 2)
    try:
        result = bitnet("models", "push", str(model_file), "--server", proxy.url, "--json",
                        env={"BITNET_TOKEN": customer.token})
    finally:
        proxy.close()
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert proxy.cuts == 1
    assert "upload interrupted" in result.stderr
    resumed = int(re.search(r"resuming at byte (\d+) of", result.stderr).group(1))
    assert 0 < resumed < len(data)
    model_id = re.search(r"created model (\S+)", result.stderr).group(1)
    got = httpx.get(f"{live_server.url}/v1/models/{model_id}/file", headers=customer.headers)
    assert got.content == data
    model = httpx.get(f"{live_server.url}/v1/models/{model_id}", headers=customer.headers).json()
    assert (model["status"], model["sha256"]) == ("ready", hashlib.sha256(data).hexdigest())


class Server:
    """``bitnet serve`` in its own process group on a free port over ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        env = {**os.environ, "BITNET_WORKERS": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bitnet_sdk.cli", "serve", "--port", "0", "--no-demo",
             "--data-dir", str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, start_new_session=True)
        self.lines: list[str] = []
        self.email = self.password = None
        while True:
            line = self.process.stdout.readline() if self.process.stdout else ""
            if not line:
                raise AssertionError("server exited:\n" + "".join(self.lines))
            self.lines.append(line)
            if m := re.search(r"email:\s+(\S+)", line):
                self.email = m.group(1)
            if m := re.search(r"password:\s+(\S+)", line):
                self.password = m.group(1)
            if m := re.search(r"serving on (http://[^\s,]+)", line):
                self.url = m.group(1)
                break
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stdout or ():
            self.lines.append(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def test_push_resumes_after_the_server_was_killed_mid_upload(tmp_path: Path, model_file: Path,
                                                             servers: list[Server]) -> None:
    data = model_file.read_bytes()
    total, acked = len(data), len(data) // 2
    first = Server(tmp_path / "data")
    servers.append(first)
    login = httpx.post(first.url + "/v1/auth/login",
                       json={"email": first.email, "password": first.password}, timeout=60)
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    model_id = httpx.post(first.url + "/v1/models", json={"name": "tiny"}, headers=headers,
                          timeout=60).json()["id"]
    upload = f"{first.url}/v1/models/{model_id}/upload"
    r = httpx.put(upload, content=data[:acked], timeout=60, headers={
        **headers, "Content-Type": "application/octet-stream",
        "Content-Range": f"bytes 0-{acked - 1}/{total}"})
    assert (r.status_code, r.json()["offset"]) == (200, acked), r.text

    # A second piece is on its way when the server dies.
    host, port = first.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        head = (f"PUT /v1/models/{model_id}/upload HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {headers['Authorization']}\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {acked}-{total - 1}/{total}\r\n"
                f"Content-Length: {total - acked}\r\n\r\n")
        sock.sendall(head.encode() + data[acked: acked + (total - acked) // 2])
        first.kill()

    second = Server(tmp_path / "data")
    servers.append(second)
    held = httpx.get(f"{second.url}/v1/models/{model_id}/upload", headers=headers, timeout=60)
    assert held.status_code == 200, held.text
    assert held.json()["offset"] >= acked and held.json()["total_bytes"] == total

    result = bitnet("models", "push", str(model_file), "--server", second.url,
                    "--model", model_id, "--json", env={"BITNET_TOKEN": headers["Authorization"][7:]})
    no_traceback(result)
    assert result.returncode == 0, result.stderr + "".join(second.lines)
    assert f"resuming at byte {held.json()['offset']} of {total}" in result.stderr
    got = httpx.get(f"{second.url}/v1/models/{model_id}/file", headers=headers, timeout=60)
    assert got.content == data
    model = httpx.get(f"{second.url}/v1/models/{model_id}", headers=headers, timeout=60).json()
    assert (model["status"], model["sha256"]) == ("ready", hashlib.sha256(data).hexdigest())
