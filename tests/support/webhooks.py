"""A webhook receiver for tests: a real HTTP server on loopback that records what it gets, and
a Standard Webhooks signature check written from the specification (not from our signer)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "Receiver", "standard_webhooks_valid"]


def standard_webhooks_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether ``webhook-signature`` holds a valid ``v1`` signature of this message.

    Per https://www.standardwebhooks.com/: the key is the base64 part of ``whsec_…``; the
    signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the header is a
    space-separated list of ``v1,<base64 HMAC-SHA256>``.
    """
    key = base64.b64decode(secret.split("_", 1)[1])
    content = b".".join([headers["webhook-id"].encode(), headers["webhook-timestamp"].encode(),
                         body])
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(version == "v1" and hmac.compare_digest(sig, expected)
               for version, _, sig in (s.partition(",")
                                       for s in headers["webhook-signature"].split(" ")))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """``with Receiver(statuses=[500, 200]) as r:`` — answers each POST with the next status
    (the last one repeats) and records it in ``r.requests``; ``r.url`` is its address."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [200])
        self.requests: list[Received] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    receiver.requests.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    n = len(receiver.requests)
                    receiver.arrived.notify_all()
                status = receiver.statuses[min(n, len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/bitnet"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """The first ``count`` requests, waiting up to ``timeout`` seconds for them."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __iter__(self) -> Iterator[Received]:
        return iter(list(self.requests))
