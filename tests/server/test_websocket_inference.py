"""/v1/inference/ws with a real client (``websockets``): subprotocol and first-message
authentication, refused credentials and scopes, malformed messages, generation equal to the
HTTP answer, cancel, closing cancels, per-message problems and the hourly rate limit."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from tests.conftest import Account
from tests.support.inference import (
    ModelFiles,
    cache_stats,
    inference_settings,
    register_model,
    schema_errors,
    wait_until,
)

PATH = "/v1/inference/ws"
PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("models"))


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return inference_settings(tmp_path, **getattr(request, "param", {}))


@pytest.fixture
def small_id(live_server: Any, customer: Account, files: ModelFiles) -> str:
    return register_model(live_server.settings, files.get(), owner_id=customer.user_id,
                          name="small")


@pytest.fixture
def endless_id(live_server: Any, customer: Account, files: ModelFiles) -> str:
    return register_model(live_server.settings, files.endless(), owner_id=customer.user_id,
                          name="endless")


def receive(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout=30))
    assert not schema_errors("WsServerMessage", message), message
    return message


@contextlib.contextmanager
def open_session(live_server: Any, account: Account) -> Iterator[ClientConnection]:
    with connect(live_server.ws_url(PATH), subprotocols=["bearer", account.token]) as ws:
        assert receive(ws)["type"] == "ready"
        yield ws


def generate(ws: ClientConnection, request_id: str, **request: Any) -> None:
    ws.send(json.dumps({"type": "generate", "request_id": request_id, "request": request}))


def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=30)
    return ws.close_code


def api_key(live_server: Any, account: Account, scopes: list[str] | None) -> str:
    from bitnet_sdk import auth

    user = auth.get_user(account.user_id)
    return auth.create_api_key(user, "ws", scopes, live_server.settings)[1]


def test_subprotocol_auth_then_tokens_equal_to_the_http_answer(
        live_server: Any, customer: Account, small_id: str) -> None:
    with connect(live_server.ws_url(PATH), subprotocols=["bearer", customer.token]) as ws:
        assert ws.subprotocol == "bearer"
        ready = receive(ws)
        assert ready == {"type": "ready", "user_id": customer.user_id,
                         "scopes": ready["scopes"]} and "inference" in ready["scopes"]
        generate(ws, "r1", model=small_id, prompt=PROMPT, max_tokens=8, temperature=0)
        messages = [receive(ws)]
        while messages[-1]["type"] == "token":
            messages.append(receive(ws))
    *tokens, done = messages
    assert done["type"] == "done" and done["request_id"] == "r1"
    assert [m["index"] for m in tokens] == list(range(len(tokens)))
    answer = httpx.post(live_server.url + "/v1/inference", headers=customer.headers, json={
        "model": small_id, "prompt": PROMPT, "max_tokens": 8, "temperature": 0}).json()
    assert [m["token_id"] for m in tokens] == [t["token_id"] for t in answer["tokens"]]
    assert done["text"] == answer["text"] and done["usage"] == answer["usage"]


def test_first_message_auth_with_an_api_key(live_server: Any, customer: Account,
                                            small_id: str) -> None:
    key = api_key(live_server, customer, None)
    with connect(live_server.ws_url(PATH)) as ws:
        assert ws.subprotocol is None
        ws.send(json.dumps({"type": "auth", "token": key}))
        assert receive(ws)["user_id"] == customer.user_id
        generate(ws, "k1", model=small_id, prompt=PROMPT, max_tokens=2)
        assert receive(ws)["type"] == "token"


def test_credentials_are_refused_with_4401_or_4403(live_server: Any, customer: Account,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from bitnet_sdk.server import websocket

    url = live_server.ws_url(PATH)
    with connect(url, subprotocols=["bearer", "not-a-token"]) as ws:
        assert close_code(ws) == 4401
    with connect(url) as ws:
        ws.send(json.dumps({"type": "auth", "token": customer.token + "x"}))
        assert close_code(ws) == 4401
    with connect(url) as ws:
        ws.send(json.dumps({"type": "cancel", "request_id": "r"}))  # before auth
        assert close_code(ws) == 4401
    read_only = api_key(live_server, customer, ["models:read"])
    with connect(url, subprotocols=["bearer", read_only]) as ws:
        assert close_code(ws) == 4403
    monkeypatch.setattr(websocket, "AUTH_TIMEOUT_S", 0.2)
    with connect(url) as ws:  # says nothing
        assert close_code(ws) == 4401


def test_malformed_messages(live_server: Any, customer: Account, small_id: str) -> None:
    for text in ("{not json", json.dumps({"type": "shout"}), json.dumps([1, 2])):
        with open_session(live_server, customer) as ws:
            ws.send(text)
            assert close_code(ws) == 1008
    with open_session(live_server, customer) as ws:
        ws.send(json.dumps({"type": "generate", "request_id": "bad id!", "request": {}}))
        error = receive(ws)
        assert error["type"] == "error" and error["error"]["status"] == 400
        assert error["request_id"] is None  # the id itself is invalid
        generate(ws, "r2", model=small_id, prompt=PROMPT, max_tokens=1, unknown_field=1)
        error = receive(ws)
        assert (error["request_id"], error["error"]["status"]) == ("r2", 400)
        generate(ws, "r3", model=small_id, prompt=PROMPT, max_tokens=1)  # still open
        assert receive(ws)["type"] == "token"


def test_cancel_ends_the_generation_with_done_cancelled(
        live_server: Any, customer: Account, endless_id: str) -> None:
    with open_session(live_server, customer) as ws:
        generate(ws, "long", model=endless_id, prompt=PROMPT, max_tokens=8000)
        assert receive(ws)["type"] == "token"
        ws.send(json.dumps({"type": "cancel", "request_id": "long"}))
        message = receive(ws)
        while message["type"] == "token":
            message = receive(ws)
        assert message["type"] == "done" and message["finish_reason"] == "cancelled"
        assert 1 <= message["usage"]["completion_tokens"] < 8000
        ws.send(json.dumps({"type": "cancel", "request_id": "long"}))  # already over
        assert receive(ws)["error"]["status"] == 404
    # the compute thread frees its slot just after "done" is sent: wait for it, do not race it
    wait_until(lambda: cache_stats(live_server)["running"] == 0, what="slot released")


def test_closing_the_socket_cancels_its_generations(
        live_server: Any, customer: Account, endless_id: str) -> None:
    from bitnet_sdk.store.models import UsageRecord

    with open_session(live_server, customer) as ws:
        generate(ws, "a", model=endless_id, prompt=PROMPT, max_tokens=8000)
        assert receive(ws)["type"] == "token"
        assert cache_stats(live_server)["running"] == 1
    wait_until(lambda: cache_stats(live_server)["running"] == 0, what="generation cancelled")
    def records() -> list[UsageRecord]:
        return list(UsageRecord.select().where(UsageRecord.user == customer.user_id))

    # Its record is open while it runs (see open_usage); one final record in the end.
    wait_until(lambda: [r.open_owner for r in records()] == [None], what="one final record")
    (record,) = records()
    assert record.operation == "inference" and record.status_code == 499
    assert 1 <= record.tokens_out < 8000


def test_problems_of_one_generation_are_error_messages(
        live_server: Any, customer: Account, endless_id: str) -> None:
    with open_session(live_server, customer) as ws:
        generate(ws, "missing", model="mdl_0123456789abc", prompt="x")
        error = receive(ws)
        assert (error["request_id"], error["error"]["status"]) == ("missing", 404)
        generate(ws, "twice", model=endless_id, prompt=PROMPT, max_tokens=8000)
        assert receive(ws)["type"] == "token"
        generate(ws, "twice", model=endless_id, prompt=PROMPT, max_tokens=1)
        message = receive(ws)
        while message["type"] == "token":
            message = receive(ws)
        assert (message["request_id"], message["error"]["status"]) == ("twice", 409)
        ws.send(json.dumps({"type": "subscribe", "job_id": "job_0123456789abc"}))
        message = receive(ws)
        while message["type"] == "token":
            message = receive(ws)
        assert message["type"] == "error" and message["error"]["status"] == 404
        assert message["request_id"] is None


LIMITED = {**DEFAULT_TIERS, "developer": TierLimits(2, 50, 1_000_000, 100_000)}


@pytest.mark.parametrize("settings", [{"tiers": LIMITED}], indirect=True)
def test_generate_messages_count_against_the_hourly_budget(
        live_server: Any, customer: Account, small_id: str) -> None:
    with open_session(live_server, customer) as ws:
        for rid in ("a", "b", "c"):
            generate(ws, rid, model=small_id, prompt=PROMPT, max_tokens=1)
            message = receive(ws)
            while message["type"] == "token":
                message = receive(ws)
            if rid == "c":
                assert message["type"] == "error" and message["error"]["status"] == 429
                assert message["error"]["retry_after"] >= 1
            else:
                assert message["type"] == "done"
    r = httpx.get(live_server.url + "/v1/auth/me", headers=customer.headers)
    assert r.status_code == 429  # the same budget as HTTP


def _queued_job(owner_id: str, kind: str = "inference_batch") -> str:
    from bitnet_sdk.service.jobs import queue as jobs

    (job,), _ = jobs.create_jobs(owner_id, kind, [jobs.JobSpec(params={"model_id": "mdl_0123456789abc"})],
                                 body_fingerprint="test", operation="test")
    return job.id


def _cancel(job_id: str, kind: str = "inference_batch") -> None:
    from bitnet_sdk.service.jobs import queue as jobs

    jobs.request_cancel(job_id, owner_id=None, kind=kind)


@pytest.mark.parametrize("settings", [{"workers": 0}], indirect=True)
def test_subscribed_jobs_send_progress_until_final(live_server: Any, customer: Account) -> None:
    mine, other = _queued_job(customer.user_id), _queued_job(customer.user_id)
    with open_session(live_server, customer) as ws:
        ws.send(json.dumps({"type": "subscribe", "job_id": mine}))
        now = receive(ws)
        assert now["type"] == "progress" and now["job"]["id"] == mine
        assert now["job"]["status"] == "queued"
        _cancel(mine)
        final = receive(ws)
        assert (final["job"]["id"], final["job"]["status"]) == (mine, "cancelled")
        ws.send(json.dumps({"type": "subscribe", "job_id": other}))
        assert receive(ws)["job"]["id"] == other
        ws.send(json.dumps({"type": "unsubscribe", "job_id": other}))
        ws.send(json.dumps({"type": "cancel", "request_id": "probe"}))  # messages run in order:
        assert receive(ws)["request_id"] == "probe"  # the unsubscribe has been handled
        _cancel(other)  # no longer followed: nothing is sent about it
        ws.send(json.dumps({"type": "subscribe", "job_id": mine}))  # final: one message
        after = receive(ws)
        assert (after["job"]["id"], after["job"]["status"]) == (mine, "cancelled")


@pytest.mark.parametrize("settings", [{"workers": 0}], indirect=True)
def test_subscriptions_follow_visibility_and_scopes(live_server: Any, customer: Account) -> None:
    from tests.conftest import make_account

    stranger = make_account(live_server.settings, "stranger@example.com")
    theirs = _queued_job(stranger.user_id)
    quantize_job = _queued_job(customer.user_id, "quantize")
    inference_only = api_key(live_server, customer, ["inference"])
    with connect(live_server.ws_url(PATH), subprotocols=["bearer", inference_only]) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "subscribe", "job_id": theirs}))
        assert receive(ws)["error"]["status"] == 404
        ws.send(json.dumps({"type": "subscribe", "job_id": quantize_job}))
        assert receive(ws)["error"]["status"] == 403
    with open_session(live_server, customer) as ws:  # a login token holds quantize
        ws.send(json.dumps({"type": "subscribe", "job_id": quantize_job}))
        assert receive(ws)["job"]["kind"] == "quantize"
