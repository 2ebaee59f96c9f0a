"""The ASGI bridge on a real Tornado server: real sockets, real HTTP clients.

Every test starts :class:`ServerThread` on a free loopback port with a small raw-ASGI or
Starlette app and talks to it with httpx or a raw socket. Synchronisation between the test
thread and the app uses events, never sleeps-and-hope.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import select
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from bitnet_sdk.server.asgi.testing import ServerThread

WAIT = 10.0  # upper bound for any wait on an event; a hang fails instead of blocking CI


async def read_body(receive: Any) -> tuple[bytes, int]:
    """Read a whole request body; return it and the number of ``http.request`` messages."""
    parts, count = [], 0
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        parts.append(message["body"])
        count += 1
        if not message.get("more_body", False):
            return b"".join(parts), count


async def send_response(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


def json_scope(scope: dict[str, Any], body: bytes) -> bytes:
    """What an echo app reports back: the scope fields a client can check."""
    return json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "root_path": scope["root_path"],
            "scheme": scope["scheme"],
            "http_version": scope["http_version"],
            "asgi": scope["asgi"],
            "client": list(scope["client"]),
            "server": list(scope["server"]),
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_len": len(body),
        }
    ).encode()


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo the scope and body digest; status and extra headers chosen by the request."""
    if scope["type"] != "http":
        return
    body, _ = await read_body(receive)
    status = 200
    for key, value in scope["headers"]:
        if key == b"x-status":
            status = int(value)
    headers = [
        (b"content-type", b"application/json"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"x-custom", b"Value With Case"),
    ]
    await send_response(send, status, json_scope(scope, body), headers)


@pytest.fixture(scope="module")
def echo_server() -> Iterator[ServerThread]:
    with ServerThread(echo_app) as server:
        yield server


def raw_request(url: str, data: bytes, read_until_close: bool = True) -> bytes:
    """Send raw bytes to the server and return what comes back until it closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close and b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


# -- round trip, scope, headers ---------------------------------------------------------------


def test_status_headers_and_body_round_trip(echo_server: ServerThread) -> None:
    payload = bytes(range(256)) * 40
    response = httpx.post(
        echo_server.url + "/echo", content=payload, headers={"X-Status": "201", "X-Mixed": "A b"}
    )
    assert response.status_code == 201
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.headers["x-custom"] == "Value With Case"
    assert response.headers["content-type"] == "application/json"
    assert "server" not in response.headers
    seen = response.json()
    assert seen["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert ["x-mixed", "A b"] in seen["headers"]
    assert all(name == name.lower() for name, _ in seen["headers"])
    assert seen["method"] == "POST"
    assert seen["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert seen["http_version"] == "1.1"
    assert seen["scheme"] == "http"
    assert seen["client"][0] == "127.0.0.1" and seen["client"][1] > 0
    assert seen["server"] == ["127.0.0.1", echo_server.server.port]


def test_query_string_and_percent_encoded_path(echo_server: ServerThread) -> None:
    raw = "/models/a%20b/%E2%9C%93%2Fx"
    response = httpx.get(echo_server.url + raw + "?q=a%20b&q=2&empty=")
    seen = response.json()
    assert seen["raw_path"] == raw
    assert seen["path"] == "/models/a b/✓/x"
    assert seen["query_string"] == "q=a%20b&q=2&empty="
    assert seen["root_path"] == ""


def test_no_default_content_type_or_server_header() -> None:
    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send_response(send, 200, b"raw")

    with ServerThread(bare) as server:
        response = httpx.get(server.url + "/")
    assert response.text == "raw"
    assert "content-type" not in response.headers
    assert "server" not in response.headers
    assert response.headers["content-length"] == "3"
    assert "date" in response.headers


@pytest.mark.parametrize("reads_body", [True, False])
def test_keep_alive_connection_serves_several_requests(reads_body: bool) -> None:
    """Answering at once (without reading the empty body) must not cost the connection."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = (await read_body(receive))[0] if reads_body else b""
        await send_response(send, 200, b"got %d" % len(body))

    with ServerThread(app) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            replies = []
            for request in (
                b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
                b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n",
            ):
                sock.sendall(request)
                reply = b""
                while not reply.endswith(b"got 0") and not reply.endswith(b"got 3"):
                    chunk = sock.recv(65536)
                    assert chunk, f"connection closed after {len(replies)} responses"
                    reply += chunk
                replies.append(reply.rpartition(b"\r\n\r\n")[2])
    assert replies == [b"got 0", b"got 3" if reads_body else b"got 0", b"got 0"]


def test_head_keeps_the_apps_content_length(echo_server: ServerThread) -> None:
    response = httpx.head(echo_server.url + "/x")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


@pytest.mark.parametrize("method", ["PROPFIND", "FINISH", "REDIRECT", "MKCOL"])
def test_unknown_methods_reach_the_app(echo_server: ServerThread, method: str) -> None:
    response = httpx.request(method, echo_server.url + "/dav", headers={"X-Status": "207"})
    assert response.status_code == 207
    assert response.json()["method"] == method


def test_no_etag_or_304_from_tornado() -> None:
    async def etagged(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(b"etag", b'"v1"')] if scope["path"] == "/tagged" else []
            await send_response(send, 200, b"fresh body", headers)

    with ServerThread(etagged) as server:
        plain = httpx.get(server.url + "/plain")
        # The app decides about conditional requests: its own ETag + If-None-Match stays 200.
        tagged = httpx.get(server.url + "/tagged", headers={"If-None-Match": '"v1"'})
    assert plain.status_code == 200 and "etag" not in plain.headers
    assert tagged.status_code == 200
    assert tagged.text == "fresh body"
    assert tagged.headers["etag"] == '"v1"'


# -- request bodies -----------------------------------------------------------------------------


PATTERN = bytes(range(256)) * 1024  # 256 KiB; the upload repeats it


def send_pattern(sock: socket.socket, start: int, end: int) -> int:
    """Send bytes ``start:end`` of the repeated :data:`PATTERN`; stop when the socket blocks.

    Non-blocking sockets return early (``select`` saw no room for 1 s: the peer stopped
    reading); returns the new position.
    """
    view = memoryview(PATTERN)
    while start < end:
        if not sock.getblocking():
            _, writable, _ = select.select([], [sock], [], 1.0)
            if not writable:
                return start
        offset = start % len(PATTERN)
        try:
            start += sock.send(view[offset : offset + min(len(PATTERN) - offset, end - start)])
        except BlockingIOError:
            continue
    return start


def test_large_upload_is_streamed_with_back_pressure() -> None:
    """50 MB upload: while the app does not read, the server stops reading the socket (the
    client blocks with memory near the 1 MiB buffer); then the app gets it in chunks."""
    size = 50 * 1024 * 1024
    reading = asyncio.Event()
    stats: dict[str, int] = {}

    async def slow_reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await reading.wait()
        digest, count, largest = hashlib.sha256(), 0, 0
        while True:
            message = await receive()
            digest.update(message["body"])
            count += 1
            largest = max(largest, len(message["body"]))
            if not message["more_body"]:
                break
        stats.update(count=count, largest=largest)
        await send_response(send, 200, digest.hexdigest().encode())

    expected = hashlib.sha256(PATTERN * (size // len(PATTERN))).hexdigest()
    with ServerThread(slow_reader) as server:
        host, port = server.url.removeprefix("http://").split(":")
        tracemalloc.start()
        try:
            with socket.create_connection((host, int(port)), timeout=3 * WAIT) as sock:
                head = f"PUT /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {size}\r\n\r\n"
                sock.sendall(head.encode())
                sock.setblocking(False)
                blocked_at = send_pattern(sock, 0, size)
                _, stalled_peak = tracemalloc.get_traced_memory()
                server.loop.call_soon_threadsafe(reading.set)
                sock.settimeout(3 * WAIT)
                assert send_pattern(sock, blocked_at, size) == size
                reply = sock.makefile("rb").read()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert blocked_at < 20 * 1024 * 1024, "the server kept reading while the app did not"
    assert stalled_peak < 8 * 1024 * 1024, f"{stalled_peak / 2**20:.1f} MiB while stalled"
    assert peak < 12 * 1024 * 1024, f"peak traced memory {peak / 2**20:.1f} MiB"
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(expected.encode())
    assert stats["count"] >= size // (1024 * 1024)  # many chunks, not one 50 MB message
    assert stats["largest"] <= 1024 * 1024


def test_body_over_the_size_limit_is_refused_with_413_before_the_app() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])

    with ServerThread(app, max_body_size=1000) as server:
        request = b"PUT /m HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
        reply = raw_request(server.url, request)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Content-Type: application/problem+json" in head
    assert json.loads(body)["limit_bytes"] == 1000
    assert seen == []  # the application never sees a request it cannot read


def test_chunked_request_body_without_content_length(echo_server: ServerThread) -> None:
    pieces = [b"alpha", b"", b"b" * 100_000, b"omega"]
    response = httpx.post(echo_server.url + "/chunked", content=iter(pieces))
    seen = response.json()
    headers = dict(seen["headers"])
    assert headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in headers
    assert seen["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_raw_chunked_request_is_decoded(echo_server: ServerThread) -> None:
    request = (
        b"POST /raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    reply = raw_request(echo_server.url, request)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()


def eventually(predicate: Callable[[], bool]) -> bool:
    """Poll ``predicate`` until it holds or :data:`WAIT` seconds passed."""
    pause = threading.Event()
    for _ in range(int(WAIT / 0.05)):
        if predicate():
            return True
        pause.wait(0.05)
    return predicate()


def no_open_connections(server: ServerThread) -> bool:
    """True once Tornado holds no connection (it keeps one object per live connection)."""

    async def count() -> int:
        return len(server.server._http._connections)

    return server.call(count()) == 0


def no_running_requests(server: ServerThread) -> bool:
    return not server.server.application.bridge.tasks


@pytest.mark.parametrize("wait_for_full_buffer", [False, True])
def test_answer_before_reading_the_body_does_not_hang(wait_for_full_buffer: bool) -> None:
    """A 401 while the client still uploads: answered at once, connection released.

    With ``wait_for_full_buffer`` the app reads one chunk and answers only once the server
    has stopped reading the socket (the bridge's body buffer is full), the case where a
    naive queue leaves Tornado's reader blocked forever.
    """
    go = asyncio.Event()

    async def deny(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if wait_for_full_buffer:
            await receive()
            await go.wait()
        await send_response(send, 401, b"no", [(b"content-type", b"text/plain")])

    total = 64 * 1024 * 1024  # announced; only a part is ever sent
    with ServerThread(deny, linger_timeout=0.2) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            head = f"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n"
            sock.sendall(head.encode())
            sock.setblocking(False)
            sent = send_pattern(sock, 0, 3 * 1024 * 1024 if not wait_for_full_buffer else total)
            assert sent < total
            server.loop.call_soon_threadsafe(go.set)
            sock.settimeout(WAIT)
            reply = b""
            while b"no" not in reply.partition(b"\r\n\r\n")[2]:
                chunk = sock.recv(65536)
                assert chunk, f"connection closed before the response: {reply!r}"
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 401")
            assert b"Content-Length: 2\r\n" in reply
            # The upload never ends: the server closes after its linger time.
            assert eventually(lambda: no_open_connections(server))
        assert eventually(lambda: no_running_requests(server))
        assert httpx.get(server.url + "/").status_code == 401  # the server is still fine


def test_early_answer_reaches_a_client_that_writes_the_whole_body_first() -> None:
    """A client that sends all 32 MB before reading must get the 401, not a reset."""

    async def deny(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send_response(send, 401, b"denied")

    size = 32 * 1024 * 1024
    with ServerThread(deny, linger_timeout=3 * WAIT) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            sock.sendall(f"PUT /m HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
            assert send_pattern(sock, 0, size) == size  # blocking: fails on a reset
            reply = sock.recv(65536)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            again = sock.makefile("rb").read()  # the drained connection is still usable
    assert reply.startswith(b"HTTP/1.1 401") and reply.endswith(b"denied")
    assert again.startswith(b"HTTP/1.1 401")


# -- receive() after the body --------------------------------------------------------------------


def test_receive_blocks_after_body_until_response_complete() -> None:
    results: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        waiter = asyncio.ensure_future(receive())
        for _ in range(20):
            await asyncio.sleep(0)  # plenty of loop turns for an eager receive() to return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {
                "type": "http.response.body",
                "body": b"pending=%d" % (not waiter.done()),
                "more_body": True,
            }
        )
        await send({"type": "http.response.body", "body": b""})
        results.append((await asyncio.wait_for(waiter, WAIT))["type"])

    with ServerThread(app) as server:
        response = httpx.post(server.url + "/", content=b"body")
    assert response.text == "pending=1"
    assert results == ["http.disconnect"]


# -- streaming responses ------------------------------------------------------------------------


def test_sse_events_arrive_incrementally() -> None:
    second = asyncio.Event()

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> Any:
            yield "data: first\n\n"
            await asyncio.wait_for(second.wait(), WAIT)  # only after the client saw the first
            yield "data: second\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/events", events)])
    with ServerThread(app) as server:
        lines = []
        with httpx.stream("GET", server.url + "/events", timeout=WAIT) as response:
            for line in response.iter_lines():
                lines.append(line)
                if line == "data: first":
                    server.loop.call_soon_threadsafe(second.set)
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
    assert [line for line in lines if line] == ["data: first", "data: second"]


def test_client_disconnect_cancels_the_streaming_generator() -> None:
    started, stopped = threading.Event(), threading.Event()

    async def forever(request: Request) -> StreamingResponse:
        async def stream() -> Any:
            try:
                while True:
                    started.set()
                    yield b"tick\n"
                    await asyncio.sleep(0.01)
            finally:
                stopped.set()

        return StreamingResponse(stream(), media_type="text/plain")

    app = Starlette(routes=[Route("/ticks", forever)])
    with ServerThread(app) as server:
        with httpx.stream("GET", server.url + "/ticks", timeout=WAIT) as response:
            first = next(response.iter_raw())
        assert first.startswith(b"tick")
        assert stopped.wait(WAIT), "the generator kept running after the client left"
        assert eventually(lambda: no_open_connections(server))
        assert eventually(lambda: no_running_requests(server))


def test_send_after_the_client_left_is_a_no_op() -> None:
    """As uvicorn at spec 2.3: the app learns of the disconnect from receive(); send()
    does not throw into the framework (Starlette/Connexion turn that into 500 noise)."""
    outcome: list[str] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
        )
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        message = await receive()  # returns once the server saw the client leave
        try:
            await send({"type": "http.response.body", "body": b""})
            outcome.append(message["type"])
        except Exception as error:
            outcome.append(repr(error))
        finally:
            done.set()

    with ServerThread(app) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while not reply.endswith(b"hello"):
                reply += sock.recv(65536)
        assert done.wait(WAIT)
    assert outcome == ["http.disconnect"]


# -- application errors --------------------------------------------------------------------------


def test_app_error_before_response_gives_a_problem_500() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise ValueError("boom")

    with ServerThread(broken) as server:
        response = httpx.get(server.url + "/")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 500 and "boom" not in response.text


def test_app_error_mid_stream_cuts_the_connection() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    with ServerThread(broken) as server, pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.url + "/")


def test_app_returning_without_response_gives_500() -> None:
    async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return None

    with ServerThread(silent) as server:
        assert httpx.get(server.url + "/").status_code == 500


def test_starlette_request_helpers_work_through_the_bridge() -> None:
    async def hello(request: Request) -> PlainTextResponse:
        form = await request.body()
        return PlainTextResponse(
            f"{request.method} {request.path_params['name']} {request.query_params['x']} "
            f"{len(form)} {request.client.host}"
        )

    app = Starlette(routes=[Route("/hello/{name}", hello, methods=["POST"])])
    with ServerThread(app) as server:
        response = httpx.post(server.url + "/hello/w%C3%B6rld?x=1", content=b"abc")
    assert response.text == "POST wörld 1 3 127.0.0.1"
