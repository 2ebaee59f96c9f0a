"""Requests refused before the application sees them are problem+json, checked with raw sockets.

Tornado used to answer each of these with a bare ``HTTP/1.1 400 Bad Request`` and no body:
control characters in a header, a header line without a colon, a missing ``Host``, a
``Content-Length`` that is not one integer (``str.isdigit`` accepts ``"²"``), one over the
server's limit (the spec promises ``413``), broken chunked framing, and the WebSocket
route's handshake refusals. A header block over the server's ``max_header_size`` got no
answer at all (the connection was just closed): now ``431``.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from bitnet_sdk.server.asgi.testing import ServerThread
from tests.conftest import Account


def exchange(url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; return the status, headers and body of the first response."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without a response: {reply!r}"
            reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def assert_problem(reply: tuple[int, dict[str, str], bytes], status: int) -> dict[str, Any]:
    code, headers, body = reply
    assert code == status, reply
    assert headers["content-type"] == "application/problem+json", headers
    assert headers["x-content-type-options"] == "nosniff"
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"], problem
    return problem


@pytest.mark.parametrize("request_bytes", [
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Evil: a\x01b\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Evil: a\x7fb\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET /v1/health?a=%zz%00 HTTP/1.1\r\nHost: x y\r\n\r\n",
])
def test_malformed_headers_get_a_400_problem(live_server: Any, request_bytes: bytes) -> None:
    assert_problem(exchange(live_server.url, request_bytes), 400)
    assert httpx.get(live_server.url + "/v1/health").status_code == 200


@pytest.mark.parametrize("length", [b"\xb2", b"12abc", b"-1", b"10, 11", b"9" * 5000])
def test_a_content_length_that_is_not_one_integer_is_a_400(live_server: Any, customer: Account,
                                                           length: bytes) -> None:
    request = (b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Authorization: Bearer " + customer.token.encode() + b"\r\n"
               b"Content-Length: " + length + b"\r\n\r\n{}")
    reply = exchange(live_server.url, request)
    if length == b"9" * 5000:  # an integer, just far too large
        assert assert_problem(reply, 413)["limit_bytes"] > 0
    else:
        assert "Content-Length" in assert_problem(reply, 400)["detail"]


def test_a_declared_body_over_the_server_limit_is_a_413_before_the_application(
        live_server: Any, customer: Account) -> None:
    from bitnet_sdk.server.asgi.bridge import DEFAULT_MAX_BODY_SIZE

    before = _usage_records(customer.user_id)
    request = (b"PUT /v1/models/mdl_0123456789abcdef/file HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Bearer " + customer.token.encode() + b"\r\n"
               b"Content-Type: application/octet-stream\r\n"
               b"Content-Length: " + str(DEFAULT_MAX_BODY_SIZE + 1).encode() + b"\r\n\r\n")
    problem = assert_problem(exchange(live_server.url, request), 413)
    assert problem["limit_bytes"] == DEFAULT_MAX_BODY_SIZE
    assert _usage_records(customer.user_id) == before  # not authenticated, counted or metered


def _usage_records(user_id: str) -> int:
    from bitnet_sdk.store.models import UsageRecord

    return UsageRecord.select().where(UsageRecord.user == user_id).count()


@pytest.mark.parametrize("size", [70_000, 300_000])
def test_a_header_block_over_the_limit_is_a_431_problem(live_server: Any, size: int) -> None:
    request = (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size
               + b"\r\n\r\n")
    problem = assert_problem(exchange(live_server.url, request), 431)
    assert problem["type"] == "urn:bitnet:problem:headers-too-large"
    assert problem["limit_bytes"] == 65536
    # A real client sees it too, and the server goes on serving.
    r = httpx.get(live_server.url + "/v1/health", headers={"X-Big": "b" * size})
    assert r.status_code == 431 and r.headers["content-type"] == "application/problem+json"
    assert httpx.get(live_server.url + "/v1/health").status_code == 200


def test_broken_chunked_framing_is_a_400_problem(live_server: Any) -> None:
    request = (b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    assert_problem(exchange(live_server.url, request), 400)


def test_a_chunked_body_over_the_limit_is_a_413_problem() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass

    with ServerThread(app, max_body_size=1000) as server:
        chunk = b"%x\r\n%s\r\n" % (600, b"x" * 600)
        request = (b"POST /m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + chunk * 2 + b"0\r\n\r\n")
        assert_problem(exchange(server.url, request), 413)


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 400),  # a plain GET: no Upgrade header
    ({"Upgrade": "websocket"}, 400),  # no Connection: Upgrade
    ({"Upgrade": "websocket", "Connection": "Upgrade"}, 400),  # no key or version
])
def test_websocket_handshake_refusals_are_problems(live_server: Any, headers: dict[str, str],
                                                   status: int) -> None:
    r = httpx.get(live_server.url + "/v1/inference/ws", headers=headers)
    assert r.status_code in (status, 426), r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.json()["status"] == r.status_code
