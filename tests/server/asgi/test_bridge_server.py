"""The server around the bridge: lifespan, graceful stop, WebSocket on the same port, Connexion."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import connexion
import httpx
import pytest
import tornado.websocket
from connexion.resolver import Resolver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from bitnet_sdk.server.asgi.lifespan import LifespanShutdownError, LifespanStartupError
from bitnet_sdk.server.asgi.testing import ServerThread
from bitnet_sdk.server.asgi.tornado_app import BridgeServer

WAIT = 10.0


def starlette_app(
    events: list[str], *, fail_startup: bool = False, fail_shutdown: bool = False
) -> Starlette:
    """A Starlette app whose lifespan records what ran and stores state for requests."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        if fail_startup:
            raise RuntimeError("database unreachable")
        yield {"greeting": "hello from lifespan"}
        events.append("shutdown")
        if fail_shutdown:
            raise RuntimeError("could not flush")

    async def state(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.greeting)

    return Starlette(routes=[Route("/state", state)], lifespan=lifespan)


# -- lifespan -----------------------------------------------------------------------------------


def test_lifespan_runs_around_serving_and_shares_state() -> None:
    events: list[str] = []
    with ServerThread(starlette_app(events)) as server:
        assert events == ["startup"]
        assert httpx.get(server.url + "/state").text == "hello from lifespan"
    assert events == ["startup", "shutdown"]


def test_lifespan_startup_failure_fails_the_start_before_listening() -> None:
    events: list[str] = []
    server = ServerThread(starlette_app(events, fail_startup=True))
    with pytest.raises(LifespanStartupError, match="database unreachable"):
        server.start()
    assert events == ["startup"]


def test_lifespan_shutdown_failure_is_reported() -> None:
    events: list[str] = []
    server = ServerThread(starlette_app(events, fail_shutdown=True)).start()
    with pytest.raises(LifespanShutdownError, match="could not flush"):
        server.stop()


async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw app without lifespan support (it rejects other scope types)."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_app_without_lifespan_is_served_in_auto_mode() -> None:
    with ServerThread(http_only) as server:
        assert httpx.get(server.url + "/").text == "ok"


def test_app_without_lifespan_fails_in_on_mode() -> None:
    with pytest.raises(LifespanStartupError):
        ServerThread(http_only, lifespan="on").start()


def test_startup_error_after_receiving_startup_is_fatal_in_auto_mode() -> None:
    async def crashing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            raise OSError("model file missing")

    with pytest.raises(LifespanStartupError, match="model file missing"):
        ServerThread(crashing).start()


def test_port_in_use_fails_and_runs_lifespan_shutdown() -> None:
    events: list[str] = []
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def start() -> None:
            await BridgeServer(starlette_app(events), "127.0.0.1", port).start()

        with pytest.raises(OSError):
            asyncio.run(start())
    assert events == ["startup", "shutdown"]


# -- graceful stop ------------------------------------------------------------------------------


def test_graceful_stop_lets_an_inflight_request_finish() -> None:
    entered, release = threading.Event(), asyncio.Event()

    async def slow(request: Request) -> PlainTextResponse:
        entered.set()
        await asyncio.wait_for(release.wait(), WAIT)
        return PlainTextResponse("finished")

    server = ServerThread(Starlette(routes=[Route("/slow", slow)])).start()
    url, port = server.url, server.server.port
    result: dict[str, Any] = {}
    client = threading.Thread(
        target=lambda: result.update(r=httpx.get(url + "/slow", timeout=WAIT))
    )
    client.start()
    assert entered.wait(WAIT)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    # Stop accepting first: new connections are refused while the request is in flight.
    for _ in range(int(WAIT / 0.02)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        except ConnectionRefusedError:
            break
        threading.Event().wait(0.02)
    else:
        pytest.fail("the server kept accepting connections while stopping")
    assert client.is_alive() and stopper.is_alive()
    server.loop.call_soon_threadsafe(release.set)
    client.join(WAIT)
    stopper.join(WAIT)
    assert result["r"].status_code == 200 and result["r"].text == "finished"
    assert not stopper.is_alive()


def test_graceful_stop_cancels_requests_after_the_timeout() -> None:
    entered, cancelled = threading.Event(), threading.Event()

    async def stuck(request: Request) -> PlainTextResponse:
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    server = ServerThread(Starlette(routes=[Route("/stuck", stuck)]), shutdown_timeout=0.2).start()
    url = server.url
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.get(url + "/stuck", timeout=WAIT)
        except httpx.HTTPError as error:
            errors.append(error)

    client = threading.Thread(target=call)
    client.start()
    assert entered.wait(WAIT)
    server.stop()
    client.join(WAIT)
    assert cancelled.is_set()
    assert len(errors) == 1 and isinstance(errors[0], httpx.RemoteProtocolError)


# -- WebSocket on the same port -----------------------------------------------------------------


class EchoSocket(tornado.websocket.WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        self.write_message(f"echo:{message}")


def test_websocket_route_and_http_share_the_port() -> None:
    async def fallback(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"asgi {request.url.path}")

    app = Starlette(routes=[Route("/{path:path}", fallback)])
    with ServerThread(app, websocket_routes=[(r"/v1/inference/ws", EchoSocket)]) as server:
        with ws_connect(server.ws_url("/v1/inference/ws"), open_timeout=WAIT) as ws:
            ws.send("ping")
            assert ws.recv(WAIT) == "echo:ping"
            assert httpx.get(server.url + "/v1/health").text == "asgi /v1/health"
            assert httpx.get(server.url + "/v1/inference/other").text == "asgi /v1/inference/other"


def test_graceful_stop_closes_websockets_with_going_away() -> None:
    server = ServerThread(http_only, websocket_routes=[(r"/ws", EchoSocket)]).start()
    with ws_connect(server.ws_url("/ws"), open_timeout=WAIT) as ws:
        ws.send("x")
        assert ws.recv(WAIT) == "echo:x"
        server.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


# -- a real Connexion app -----------------------------------------------------------------------

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "bridge test", "version": "1"},
    "paths": {
        "/greet/{name}": {
            "get": {
                "operationId": "greet",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "times", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                ],
                "responses": {"200": {"description": "greeting"}},
            }
        },
        "/echo": {
            "post": {
                "operationId": "echo",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["text"],
                                "properties": {"text": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "echo"}},
            }
        },
    },
}


def greet(name: str, times: int = 1) -> tuple[dict[str, str], int]:
    return {"greeting": " ".join([f"hello {name}"] * times)}, 200


def echo(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return {"text": body["text"][::-1]}, 200


def test_connexion_app_through_the_bridge() -> None:
    handlers = {"greet": greet, "echo": echo}
    app = connexion.AsyncApp(__name__)
    app.add_api(SPEC, resolver=Resolver(function_resolver=handlers.__getitem__))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=WAIT) as client:
        greeting = client.get("/greet/w%C3%B6rld", params={"times": 2})
        echoed = client.post("/echo", json={"text": "abc"})
        invalid = client.get("/greet/x", params={"times": 0})
        missing = client.get("/nowhere")
        bad_body = client.post("/echo", json={"nope": 1})
    assert greeting.status_code == 200
    assert greeting.json() == {"greeting": "hello wörld hello wörld"}
    assert echoed.json() == {"text": "cba"}
    assert invalid.status_code == 400
    assert invalid.headers["content-type"] == "application/problem+json"
    assert missing.status_code == 404
    assert bad_body.status_code == 400
