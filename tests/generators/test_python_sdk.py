"""The generated Python SDK: every module imports and compiles, and the hand-written runtime
(retries, idempotency, token refresh, errors, Server-Sent Events, pagination, job waiting)
behaves as documented against a scripted HTTP peer (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import compileall
import importlib
import json
import pkgutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest


@pytest.fixture(scope="module")
def sdk(sdk_dir: Callable[[str], Path]) -> Iterator[ModuleType]:
    root = sdk_dir("python")
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("bitnet_client")
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == "bitnet_client" or n.startswith("bitnet_client.")]:
            del sys.modules[name]


def test_every_module_compiles_and_imports(sdk: ModuleType, sdk_dir: Callable[[str], Path]) -> None:
    assert compileall.compile_dir(str(sdk_dir("python")), quiet=1, force=True)
    names = [m.name for m in pkgutil.walk_packages(sdk.__path__, "bitnet_client.")]
    for name in names:
        importlib.import_module(name)
    assert "bitnet_client.api.models.upload_model_file" in names
    assert "bitnet_client._runtime.transport" in names


def test_one_method_per_operation(sdk: ModuleType, api: Any) -> None:
    from openapi_python_client.strings import PythonIdentifier

    for cls in (sdk.BitNetClient, sdk.AsyncBitNetClient):
        for op in api.operations:
            assert callable(getattr(cls, str(PythonIdentifier(op.id, "field_")))), op.id
    assert callable(sdk.BitNetClient.list_models_all)
    assert callable(sdk.BitNetClient.wait_for_quantize_job)


class Peer:
    """A scripted server: answers are popped in order; every request is recorded."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer


def problem(status: int, headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    body = {"type": "about:blank", "title": "Oops", "status": status, "detail": "went wrong", **extra}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json", **(headers or {})})


JOB = {"id": "job_0123456789", "kind": "quantize", "status": "queued", "progress": 0, "model_id": "mdl_0123456789",
       "created_at": "2025-04-01T12:00:00Z", "started_at": None, "finished_at": None, "attempts": 0,
       "cancel_requested": False, "links": {"self": "/v1/quantize/job_0123456789",
                                            "cancel": "/v1/quantize/job_0123456789/cancel"}}


def client_for(sdk: ModuleType, peer: Peer, **options: Any) -> Any:
    retry = options.pop("retry", sdk.RetryPolicy(base_delay=0.001, max_delay=0.002))
    return sdk.BitNetClient("http://api.test", retry=retry, httpx_args={"transport": httpx.MockTransport(peer)},
                            **options)


def test_job_creating_post_is_retried_with_one_idempotency_key(sdk: ModuleType) -> None:
    from bitnet_client.models import QuantizeRequest

    peer = Peer(problem(503), problem(502), httpx.Response(202, json=JOB))
    client = client_for(sdk, peer, token="t0")
    job = client.quantize_model(body=QuantizeRequest(model_id="mdl_0123456789", qtype="tq2_0"))
    assert job.id == "job_0123456789"
    keys = {r.headers["Idempotency-Key"] for r in peer.requests}
    assert len(peer.requests) == 3 and len(keys) == 1 and keys != {""}
    assert all(r.url == "http://api.test/v1/quantize" for r in peer.requests)
    assert all(r.headers["Authorization"] == "Bearer t0" for r in peer.requests)


def test_plain_post_is_not_retried_on_500_but_is_on_429(sdk: ModuleType) -> None:
    from bitnet_client.models import ApiKeyCreate

    peer = Peer(problem(500))
    with pytest.raises(sdk.ApiError) as caught:
        client_for(sdk, peer, api_key="k").create_api_key(body=ApiKeyCreate(name="x"))
    assert len(peer.requests) == 1 and caught.value.status == 500
    assert peer.requests[0].headers["X-API-Key"] == "k"
    created = {"id": "key_0123456789", "name": "x", "prefix": "bn_x", "scopes": [], "key": "bn_x_y",
               "created_at": "2025-04-01T12:00:00Z", "last_used_at": None, "expires_at": None}
    peer = Peer(problem(429, headers={"Retry-After": "0"}), httpx.Response(201, json=created))
    assert client_for(sdk, peer).create_api_key(body=ApiKeyCreate(name="x")).key == "bn_x_y"
    assert len(peer.requests) == 2


def test_long_retry_after_is_raised_at_once_with_the_problem_fields(sdk: ModuleType) -> None:
    peer = Peer(problem(429, request_id="req_0123456789", errors=[{"field": "a", "message": "b"}],
                        headers={"Retry-After": "3600"}))
    with pytest.raises(sdk.ApiError) as caught:
        client_for(sdk, peer, token="t").get_account()
    err = caught.value
    assert len(peer.requests) == 1
    assert (err.status, err.title, err.detail, err.request_id, err.retry_after) == (
        429, "Oops", "went wrong", "req_0123456789", 3600.0)
    assert err.errors == [sdk.ProblemField("a", "b")]


def test_request_id_falls_back_to_the_header(sdk: ModuleType) -> None:
    peer = Peer(httpx.Response(404, json={"title": "Not Found", "status": 404}, headers={"X-Request-ID": "req_h"}))
    with pytest.raises(sdk.ApiError) as caught:
        client_for(sdk, peer, token="t").get_model("mdl_0123456789")
    assert caught.value.request_id == "req_h" and caught.value.status == 404


def test_error_answers_raise_one_subclass_per_status(sdk: ModuleType) -> None:
    expected = {400: sdk.BadRequestError, 401: sdk.AuthenticationError, 403: sdk.PermissionDeniedError,
                404: sdk.NotFoundError, 409: sdk.ConflictError, 422: sdk.UnprocessableEntityError,
                429: sdk.RateLimitError, 500: sdk.InternalServerError, 503: sdk.InternalServerError,
                418: sdk.ApiError}
    for status, kind in expected.items():
        peer = Peer(problem(status, headers={"Retry-After": "3600"}))
        with pytest.raises(sdk.ApiError) as caught:
            client_for(sdk, peer, token="t", retry=sdk.NO_RETRY).get_account()
        assert type(caught.value) is kind and caught.value.status == status


def test_transport_failures_raise_connection_errors(sdk: ModuleType) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(sdk.ApiConnectionError) as caught:
        client_for(sdk, Peer(refuse, refuse, refuse, refuse), token="t").get_account()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert not isinstance(caught.value, sdk.ApiTimeoutError)
    with pytest.raises(sdk.ApiTimeoutError):
        client_for(sdk, Peer(stall), token="t", retry=sdk.NO_RETRY).get_account()


def test_environment_user_agent_per_call_options_and_dict_bodies(sdk: ModuleType,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = {"access_token": "t1", "refresh_token": "r1", "token_type": "Bearer", "expires_in": 900,
              "refresh_expires_in": 9, "scope": ""}
    peer = Peer(httpx.Response(200, json=tokens), problem(404), problem(404))
    monkeypatch.setenv("BITNET_BASE_URL", "http://env.test")
    monkeypatch.setenv("BITNET_API_KEY", "bn_env")
    client = sdk.BitNetClient(httpx_args={"transport": httpx.MockTransport(peer)})
    assert client.login(body={"email": "a@example.com", "password": "pw"}).access_token == "t1"
    login = peer.requests[0]
    assert login.url == "http://env.test/v1/auth/login"
    assert json.loads(login.content) == {"email": "a@example.com", "password": "pw"}
    assert login.headers["User-Agent"] == "bitnet-client/1.0.0 (python)"
    quick = client.with_options(timeout=2.5, headers={"X-Trace": "1"}, retry=sdk.NO_RETRY)
    with pytest.raises(sdk.NotFoundError):
        quick.get_model("mdl_0123456789")
    sent = peer.requests[1]
    assert sent.headers["X-API-Key"] == "bn_env" and sent.headers["X-Trace"] == "1"
    assert sent.extensions["timeout"]["read"] == 2.5
    client.set_tokens("t2")  # the view shares the client's credentials
    with pytest.raises(sdk.NotFoundError):
        quick.get_model("mdl_0123456789")
    assert peer.requests[2].headers["Authorization"] == "Bearer t2"
    monkeypatch.delenv("BITNET_BASE_URL")
    with pytest.raises(ValueError, match="BITNET_BASE_URL"):
        sdk.BitNetClient()


def test_401_refreshes_once_and_retries_with_the_new_token(sdk: ModuleType) -> None:
    user = {"id": "usr_0123456789", "email": "a@example.com", "tier": "developer", "is_admin": False,
            "created_at": "2025-04-01T12:00:00Z", "credential_type": "access_token", "scopes": []}
    tokens = {"access_token": "t1", "refresh_token": "r1", "token_type": "Bearer", "expires_in": 900,
              "refresh_expires_in": 9, "scope": ""}
    peer = Peer(problem(401), httpx.Response(200, json=tokens), httpx.Response(200, json=user))
    seen: list[Any] = []
    client = client_for(sdk, peer, token="t0", refresh_token="r0", on_tokens=seen.append)
    assert client.get_current_user().email == "a@example.com"
    first, refresh, retried = peer.requests
    assert first.headers["Authorization"] == "Bearer t0" and retried.headers["Authorization"] == "Bearer t1"
    assert refresh.url.path == "/v1/auth/refresh" and "Authorization" not in refresh.headers
    assert json.loads(refresh.content) == {"refresh_token": "r0"}
    assert [t.access_token for t in seen] == ["t1"] and client.client.refresh_token == "r1"
    peer = Peer(problem(401), problem(401))  # the refresh itself fails: the first 401 is raised
    with pytest.raises(sdk.ApiError) as caught:
        client_for(sdk, peer, token="t0", refresh_token="bad").get_current_user()
    assert caught.value.status == 401 and len(peer.requests) == 2


class Chunks(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def test_stream_events_are_typed_and_parsed_across_chunk_boundaries(sdk: ModuleType) -> None:
    from bitnet_client.models import InferenceRequest

    token = json.dumps({"index": 0, "token_id": 5, "text": " Pa", "logprob": None})
    done = json.dumps({"id": "req_0123456789", "model": "mdl_0123456789", "finish_reason": "stop", "text": " Pa",
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "compute_units": 0},
                       "timing": {"queue_ms": 0, "load_ms": 0, "prompt_ms": 0, "generation_ms": 0, "total_ms": 0}})
    wire = f"\ufeff: keep-alive\r\nevent: token\r\nid: 0\r\ndata: {token}\r\n\r\nevent: ping\ndata: {{}}\n\nevent: done\rdata: {done}\r\r"
    raw = wire.encode()
    pieces = [raw[i:i + 7] for i in range(0, len(raw), 7)]  # CR LF pairs and UTF-8 split apart
    peer = Peer(httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=Chunks(pieces)))
    with client_for(sdk, peer, token="t").stream_inference(body=InferenceRequest(model="m", prompt="x")) as events:
        got = list(events)
    assert [(e.event, e.id) for e in got] == [("token", "0"), ("done", "0")]  # unknown "ping" skipped
    assert got[0].data.text == " Pa" and got[1].data.finish_reason == "stop"
    assert peer.requests[0].headers["Accept"] == "text/event-stream"


def test_an_error_event_ends_the_stream_with_api_error(sdk: ModuleType) -> None:
    from bitnet_client.models import InferenceRequest

    wire = b'event: error\ndata: {"type": "about:blank", "title": "Gone", "status": 503, "detail": "d"}\n\n'
    peer = Peer(httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=Chunks([wire])))
    with pytest.raises(sdk.ApiError) as caught:
        list(client_for(sdk, peer, token="t").stream_inference(body=InferenceRequest(model="m", prompt="x")))
    assert (caught.value.status, caught.value.title) == (503, "Gone")


def test_pagination_follows_next_cursor_until_null(sdk: ModuleType) -> None:
    def page(ids: list[str], nxt: str | None) -> httpx.Response:
        item = {"id": "", "name": "k", "prefix": "p", "scopes": [], "created_at": "2025-04-01T12:00:00Z",
                "last_used_at": None, "expires_at": None}
        return httpx.Response(200, json={"data": [dict(item, id=i) for i in ids], "next_cursor": nxt})

    peer = Peer(page(["a", "b"], "c2"), page(["c"], "c3"), page([], None))
    ids = [k.id for k in client_for(sdk, peer, token="t").list_api_keys_all(limit=2)]
    assert ids == ["a", "b", "c"]
    assert [r.url.params.get("cursor") for r in peer.requests] == [None, "c2", "c3"]
    assert {r.url.params["limit"] for r in peer.requests} == {"2"}


def test_job_waiter_polls_until_final_and_times_out(sdk: ModuleType) -> None:
    peer = Peer(httpx.Response(200, json=JOB), httpx.Response(200, json=dict(JOB, status="running")),
                httpx.Response(200, json=dict(JOB, status="succeeded")))
    job = client_for(sdk, peer, token="t").wait_for_quantize_job("job_0123456789", interval=0.001)
    assert job.status == "succeeded" and len(peer.requests) == 3
    peer = Peer(*[httpx.Response(200, json=JOB)] * 100)
    with pytest.raises(sdk.WaitTimeoutError) as caught:
        client_for(sdk, peer, token="t").wait_for_quantize_job("job_0123456789", timeout=0.05, interval=0.01)
    assert caught.value.last.status == "queued"


def test_raw_upload_streams_the_file_and_rewinds_it_for_a_retry(sdk: ModuleType, tmp_path: Path) -> None:
    data = bytes(range(256)) * 300
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    model = {"id": "mdl_0123456789", "name": "m", "description": None, "status": "ready", "size_bytes": len(data),
             "sha256": None, "tags": [], "public": False, "owner_id": None, "source_model_id": None,
             "created_at": "2025-04-01T12:00:00Z", "updated_at": "2025-04-01T12:00:00Z",
             "links": {"self": "s", "file": "f", "metadata": "m", "validation": "v"}}
    peer = Peer(problem(503, headers={"Retry-After": "0"}), httpx.Response(200, json=model))
    progress: list[tuple[int, int | None]] = []
    with path.open("rb") as f:
        payload = sdk.with_progress(f, lambda sent, total: progress.append((sent, total)))
        got = client_for(sdk, peer, token="t").upload_model_file("mdl_0123456789", body=sdk.File(payload=payload))
    assert got.status == "ready"
    assert [r.content for r in peer.requests] == [data, data]
    assert peer.requests[1].headers["Content-Type"] == "application/octet-stream"
    assert peer.requests[1].headers["Content-Length"] == str(len(data))
    # Upload progress: to the full size, then again from the start for the retry.
    ends = [i for i, (sent, _) in enumerate(progress) if sent == len(data)]
    assert len(ends) == 2 and progress[-1] == (len(data), len(data)) and progress[ends[0] + 1][0] < len(data)
    assert all(total == len(data) for _, total in progress)


def test_resumable_upload_continues_from_the_servers_offset_after_a_broken_connection(
        sdk: ModuleType, tmp_path: Path) -> None:
    import hashlib

    data = bytes(range(256)) * 12  # 3072 bytes, in pieces of 1000
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    model = {"id": "mdl_0123456789", "name": "m", "description": None, "status": "ready", "size_bytes": len(data),
             "sha256": None, "tags": [], "public": False, "owner_id": None, "source_model_id": None,
             "created_at": "2025-04-01T12:00:00Z", "updated_at": "2025-04-01T12:00:00Z",
             "links": {"self": "s", "file": "f", "metadata": "m", "validation": "v"}}

    def state(offset: int, **extra: Any) -> httpx.Response:
        return httpx.Response(200, json={"model_id": "mdl_0123456789", "offset": offset, "total_bytes": len(data),
                                         "complete": False, **extra})

    def cut(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    peer = Peer(state(0), state(1000), cut, state(1500), state(2500), state(len(data), complete=True, model=model))
    sent: list[int] = []
    done = client_for(sdk, peer, token="t").upload_model_resumable(
        "mdl_0123456789", path, piece_size=1000, progress=lambda position, total: sent.append(position))
    assert done.complete and done.model.status == "ready"
    puts = [r for r in peer.requests if r.method == "PUT"]
    assert [r.headers["Content-Range"] for r in puts] == [
        "bytes 0-999/3072", "bytes 1000-1999/3072", "bytes 1500-2499/3072", "bytes 2500-3071/3072"]
    assert [r.method for r in peer.requests] == ["GET", "PUT", "PUT", "GET", "PUT", "PUT"]
    assert puts[2].content == data[1500:2500] and puts[3].content == data[2500:]
    assert {r.headers["X-Content-SHA256"] for r in puts} == {hashlib.sha256(data).hexdigest()}
    assert sent[-1] == len(data)


def test_async_resumable_upload_resumes_after_a_broken_connection(sdk: ModuleType, tmp_path: Path) -> None:
    data = b"0123456789" * 300
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    held = {"offset": 0}
    seen: list[tuple[str, str | None, bytes]] = []
    cut_once = [True]

    async def server(request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        seen.append((request.method, request.headers.get("Content-Range"), body))
        if request.method == "PUT":
            if cut_once and held["offset"] > 0:
                cut_once.clear()
                held["offset"] += len(body) // 2  # half the piece arrived before the cut
                raise httpx.RemoteProtocolError("peer closed connection", request=request)
            held["offset"] += len(body)
        state = {"model_id": "m", "offset": held["offset"], "total_bytes": len(data),
                 "complete": held["offset"] == len(data)}
        return httpx.Response(200, json=state)

    async def main() -> Any:
        async with sdk.AsyncBitNetClient("http://api.test", token="t", retry=sdk.NO_RETRY,
                                         httpx_args={"transport": httpx.MockTransport(server)}) as client:
            return await client.upload_model_resumable("m", path, piece_size=1000)

    done = asyncio.run(main())
    assert done.complete and done.offset == len(data)
    assert [(m, r) for m, r, _ in seen] == [
        ("GET", None), ("PUT", "bytes 0-999/3000"), ("PUT", "bytes 1000-1999/3000"), ("GET", None),
        ("PUT", "bytes 1500-2499/3000"), ("PUT", "bytes 2500-2999/3000")]
    assert b"".join(body for m, _, body in seen if m == "PUT") != data  # the cut piece was partly resent
    assert seen[4][2] == data[1500:2500]


def test_resumable_upload_stops_at_a_refusal(sdk: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"x" * 10)
    peer = Peer(httpx.Response(200, json={"model_id": "m", "offset": 0, "complete": False}),
                problem(413, type="urn:bitnet:problem:storage-quota-exceeded"))
    with pytest.raises(sdk.ApiError) as caught:
        client_for(sdk, peer, token="t").upload_model_resumable("m", path)
    assert caught.value.status == 413 and len(peer.requests) == 2


def test_a_dict_body_missing_a_required_field_is_refused_naming_it(sdk: ModuleType) -> None:
    peer = Peer()  # nothing may be sent
    with pytest.raises(sdk.BodyError) as caught:
        client_for(sdk, peer).login(body={"email": "a@example.com"})
    assert caught.value.field == "password" and caught.value.model == "LoginRequest"
    assert "'password'" in str(caught.value) and "LoginRequest" in str(caught.value)
    assert isinstance(caught.value, ValueError) and caught.value.__cause__ is None
    with pytest.raises(sdk.BodyError) as nested:  # a required field of a nested object
        client_for(sdk, peer, token="t").run_inference(
            body={"model": "m", "messages": [{"content": "hi"}]})
    assert nested.value.field == "role"
    assert peer.requests == []


def test_async_client_shares_the_behaviour(sdk: ModuleType) -> None:
    peer = Peer(problem(503), httpx.Response(200, json={"version": "1", "api_version": "1"}))

    async def main() -> str:
        transport = httpx.MockTransport(peer)
        async with sdk.AsyncBitNetClient("http://api.test", retry=sdk.RetryPolicy(base_delay=0.001),
                                         httpx_args={"transport": transport}) as client:
            return (await client.get_version()).version

    assert asyncio.run(main()) == "1" and len(peer.requests) == 2
