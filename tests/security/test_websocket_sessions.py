"""WebSocket attacks through the live server (``/v1/inference/ws``).

* A revoked API key kept working on an open socket for everything but ``generate``:
  now every message re-checks it (close ``4401``), and a silent socket following a job
  is closed by the periodic re-check too.
* Messages other than ``generate`` were free: now each counts against the hourly budget
  (an ``error`` 429 past it, shared with HTTP) and leaves a usage record.
* One user could open sockets without bound: past the per-user cap the socket is closed
  with ``4429``, as the spec's close codes promise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from tests.conftest import Account

PATH = "/v1/inference/ws"


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return Settings(data_dir=tmp_path / "data", demo_model=False, workers=0,
                    **getattr(request, "param", {}))


def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=30))


def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=30)
    return ws.close_code


def new_key(live_server: Any, account: Account) -> tuple[str, str]:
    r = httpx.post(live_server.url + "/v1/api-keys", headers=account.headers,
                   json={"name": "ws", "scopes": ["inference"]})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def revoke(live_server: Any, account: Account, key_id: str) -> None:
    r = httpx.delete(f"{live_server.url}/v1/api-keys/{key_id}", headers=account.headers)
    assert r.status_code == 204, r.text


def queued_job(owner_id: str) -> str:
    from bitnet_sdk.service.jobs import queue as jobs

    (job,), _ = jobs.create_jobs(owner_id, "inference_batch",
                                 [jobs.JobSpec(params={"model_id": "mdl_0123456789abc"})],
                                 body_fingerprint="test", operation="test")
    return job.id


def test_a_revoked_key_stops_working_at_the_next_message(live_server: Any,
                                                         customer: Account) -> None:
    key_id, key = new_key(live_server, customer)
    first, second = queued_job(customer.user_id), queued_job(customer.user_id)
    with connect(live_server.ws_url(PATH), subprotocols=["bearer", key]) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "subscribe", "job_id": first}))
        assert receive(ws)["job"]["id"] == first
        revoke(live_server, customer, key_id)
        ws.send(json.dumps({"type": "subscribe", "job_id": second}))
        assert close_code(ws) == 4401


@pytest.mark.parametrize("settings", [{"ws_credential_recheck_s": 0.2}], indirect=True)
def test_a_silent_socket_is_closed_once_its_key_is_revoked(live_server: Any,
                                                           customer: Account) -> None:
    key_id, key = new_key(live_server, customer)
    job = queued_job(customer.user_id)
    with connect(live_server.ws_url(PATH), subprotocols=["bearer", key]) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "subscribe", "job_id": job}))
        assert receive(ws)["job"]["status"] == "queued"
        revoke(live_server, customer, key_id)
        # Nothing more is sent by the client: the server's re-check closes the socket.
        assert close_code(ws) == 4401


LIMITED = {**DEFAULT_TIERS, "developer": TierLimits(4, 50, 1_000_000, 100_000)}


@pytest.mark.parametrize("settings", [{"tiers": LIMITED}], indirect=True)
def test_every_message_is_rate_limited_and_metered(live_server: Any, customer: Account) -> None:
    from bitnet_sdk.store.models import UsageRecord

    job = queued_job(customer.user_id)
    with connect(live_server.ws_url(PATH), subprotocols=["bearer", customer.token]) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "subscribe", "job_id": job}))
        assert receive(ws)["type"] == "progress"
        ws.send(json.dumps({"type": "unsubscribe", "job_id": job}))
        ws.send(json.dumps({"type": "cancel", "request_id": "nothing"}))
        assert receive(ws)["error"]["status"] == 404  # no such generation: handled, counted
        ws.send(json.dumps({"type": "auth", "token": customer.token}))
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "cancel", "request_id": "over"}))
        refused = receive(ws)
        assert refused["request_id"] == "over"
        assert refused["error"]["status"] == 429 and refused["error"]["retry_after"] >= 1
    operations = sorted(r.operation for r in UsageRecord.select().where(
        UsageRecord.user == customer.user_id))
    assert operations == ["wsAuth", "wsCancel", "wsSubscribe", "wsUnsubscribe"]
    statuses = {r.operation: r.status_code for r in UsageRecord.select()}
    assert statuses["wsCancel"] == 404 and statuses["wsSubscribe"] == 200
    # The budget is the one HTTP uses.
    assert httpx.get(live_server.url + "/v1/auth/me",
                     headers=customer.headers).status_code == 429


@pytest.mark.parametrize("settings", [{"ws_max_connections_per_user": 2}], indirect=True)
def test_open_sockets_per_user_are_capped_with_4429(live_server: Any, customer: Account,
                                                    admin: Account) -> None:
    url = live_server.ws_url(PATH)
    with connect(url, subprotocols=["bearer", customer.token]) as one, \
            connect(url, subprotocols=["bearer", customer.token]) as two:
        assert receive(one)["type"] == receive(two)["type"] == "ready"
        with connect(url, subprotocols=["bearer", customer.token]) as three:
            assert close_code(three) == 4429
        with connect(url) as four:  # first-message auth counts the same
            four.send(json.dumps({"type": "auth", "token": customer.token}))
            assert close_code(four) == 4429
        with connect(url, subprotocols=["bearer", admin.token]) as other_user:
            assert receive(other_user)["type"] == "ready"
        two.close()
        with connect(url, subprotocols=["bearer", customer.token]) as again:
            # A closed socket frees its place (the close is handled before this upgrade).
            message = receive(again)
            assert message["type"] == "ready", message
