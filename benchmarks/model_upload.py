"""Server memory and speed of model uploads: the raw streamed PUT vs. multipart, in one run.

A real server (``bitnet serve``, its own process, loopback) receives

* a large raw ``PUT /v1/models/{id}/file`` (default 300 MiB; junk after a GGUF magic, so the
  whole body is streamed, hashed, written and fsynced, then refused by validation with 422);
* a multipart ``POST /v1/models`` of a smaller body (default 48 MiB, under the 64 MiB
  multipart limit), the baseline: Connexion buffers multipart bodies whole.

For each, the server's resident memory (``VmRSS`` from ``/proc``, Linux only) is sampled every
10 ms; the growth of its peak over the value before is printed per MiB of body, with the ratio
raw/multipart.
Speed: the raw upload's MiB/s against this process hashing and writing the same bytes to a
local file (the work the server must do anyway), measured in the same run.

    python benchmarks/model_upload.py
    python benchmarks/model_upload.py --raw-mib 1024 --multipart-mib 32
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

CHUNK = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS (not Linux?)")


class PeakRSS:
    """Samples a process' resident memory every 10 ms while the block runs: growth in KiB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.growth = 0

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = _rss_kib(self.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_kib(self.pid))

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_kib(self.pid))
        self.growth = self.peak - self.before


def _body(mib: int) -> Iterator[bytes]:
    block = b"GGUF" + bytes(CHUNK - 4)
    yield block
    rest = bytes(CHUNK)
    for _ in range(mib - 1):
        yield rest


def _token(data_dir: Path) -> str:
    """An access token for a new user, made directly in the server's store."""
    from bitnet_sdk import auth, store
    from bitnet_sdk.config import Settings

    settings = Settings(data_dir=data_dir)
    db = store.connect(settings.db_url)
    try:
        user = auth.create_user("bench@example.com", "correct horse battery staple 42",
                                settings=settings)
        token, _ = auth.issue_access_token(user, user.scopes, settings)
    finally:
        db.close()
    return token


def _local_baseline(mib: int, directory: Path) -> float:
    """Seconds to hash and write ``mib`` MiB to a file and fsync it, here."""
    start = time.perf_counter()
    digest = hashlib.sha256()
    path = directory / "baseline.bin"
    with open(path, "wb") as fh:
        for block in _body(mib):
            digest.update(block)
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-mib", type=int, default=300)
    parser.add_argument("--multipart-mib", type=int, default=48)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bitnet-upload-bench-") as tmp:
        data_dir, port = Path(tmp) / "data", _free_port()
        env = {**os.environ, "BITNET_DATA_DIR": str(data_dir), "BITNET_PORT": str(port),
               "BITNET_DEMO_MODEL": "0", "BITNET_WORKERS": "0"}
        server = subprocess.Popen([sys.executable, "-m", "bitnet_sdk.cli", "serve"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            for _ in range(300):
                try:
                    if httpx.get(url + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise RuntimeError("server did not start")
            headers = {"Authorization": f"Bearer {_token(data_dir)}"}
            client = httpx.Client(base_url=url, headers=headers, timeout=600)

            def record(name: str) -> str:
                r = client.post("/models", json={"name": name})
                r.raise_for_status()
                return str(r.json()["id"])

            # Warm-up: code paths, imports and allocator pools of both kinds of upload.
            client.put(f"/models/{record('warm')}/file", content=b"GGUF" + bytes(CHUNK),
                       headers={"Content-Type": "application/octet-stream"})
            client.post("/models", files={"file": ("w.gguf", b"GGUF" + bytes(CHUNK))},
                        data={"name": "warm2"})

            model_id = record("big")
            with PeakRSS(server.pid) as raw:
                start = time.perf_counter()
                r = client.put(f"/models/{model_id}/file", content=_body(args.raw_mib),
                               headers={"Content-Type": "application/octet-stream",
                                        "Content-Length": str(args.raw_mib * CHUNK)})
                raw_s = time.perf_counter() - start
            assert r.status_code == 422, r.text  # streamed whole, then refused by validation

            body = b"GGUF" + bytes(args.multipart_mib * CHUNK - 4)
            with PeakRSS(server.pid) as multipart:
                r = client.post("/models", files={"file": ("m.gguf", body)}, data={"name": "mp"})
            assert r.status_code == 422, r.text
            del body
            raw_growth, multipart_growth = raw.growth, multipart.growth
        finally:
            server.terminate()
            server.wait(30)
        local_s = _local_baseline(args.raw_mib, Path(tmp))

    raw_per = raw_growth / 1024 / args.raw_mib
    mp_per = multipart_growth / 1024 / args.multipart_mib
    print(f"raw PUT    {args.raw_mib:5d} MiB: server peak RSS +{raw_growth / 1024:7.1f} MiB "
          f"({raw_per:.4f} MiB per MiB), {args.raw_mib / raw_s:6.1f} MiB/s")
    print(f"multipart  {args.multipart_mib:5d} MiB: server peak RSS +{multipart_growth / 1024:7.1f} MiB "
          f"({mp_per:.4f} MiB per MiB)  [baseline]")
    print(f"memory per MiB, raw/multipart: {raw_per / mp_per if mp_per else float('nan'):.4f}")
    print(f"speed, raw upload / local hash+write+fsync: "
          f"{local_s / raw_s:.2f}  ({args.raw_mib / local_s:.1f} MiB/s locally)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
