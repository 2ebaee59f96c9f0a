"""Expired quota reservations and live-socket rows are swept, whoever they belong to.

Attack (or just bad luck): processes are killed while they hold reservations and open
WebSockets for users who never come back. Their rows stop counting once they expire,
but a sweep that only deletes a user's own expired rows when that user returns leaves
them in the tables for ever: the tables grow with every crash. Here, round after round,
departed users leave expired rows behind while another customer keeps using the live
server (SQLite and PostgreSQL); the tables stay small, and live rows are never touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from bitnet_sdk.server.app import create_app
from bitnet_sdk.server.asgi.testing import ServerThread
from bitnet_sdk.server.run import websocket_routes
from bitnet_sdk.service.accounting import live_sockets, reservations
from bitnet_sdk.store.models import LiveSocket, QuotaReservation
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database_url,
)
from tests.conftest import Account, make_account
from tests.support.inference import (
    ModelFiles,
    inference_settings,
    register_model,
    wait_until,
)

ROUNDS = 40
#: Rows a departed user leaves behind in each table every round (a killed process).
LEFT_BEHIND = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("models"))


@pytest.fixture(params=DATABASE_KINDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database_url(request.param, tmp_path) as url:
        settings = inference_settings(tmp_path, database_url=url, workers=0)
        app = create_app(settings)
        with ServerThread(app, websocket_routes=websocket_routes(app)) as thread:
            thread.settings = settings
            yield thread


def _crash(server: ServerThread, user: Account, long_ago: float) -> None:
    """What a process killed mid-request leaves: rows whose leases have run out."""
    for _ in range(LEFT_BEHIND):
        reservations.reserve(user.user_id, "developer", 1, 0.0, server.settings, now=long_ago)
        assert live_sockets.open_socket(user.user_id, 1000, now=long_ago) is not None


def _generate(server: ServerThread, user: Account, model: str) -> None:
    r = httpx.post(server.url + "/v1/inference", headers=user.headers, timeout=120,
                   json={"model": model, "prompt": "Once", "max_tokens": 1})
    assert r.status_code == 200, r.text


def _connect(server: ServerThread, user: Account) -> None:
    with connect(server.ws_url("/v1/inference/ws"), subprotocols=["bearer", user.token]) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"


def test_rows_of_users_who_never_come_back_do_not_pile_up(
        server: ServerThread, files: ModelFiles) -> None:
    active = make_account(server.settings, "active@example.com")
    departed = [make_account(server.settings, f"gone{i}@example.com") for i in range(2)]
    model = register_model(server.settings, files.get(), owner_id=active.user_id, name="tiny")
    # A live reservation and socket of a departed user: they must survive every sweep.
    held = reservations.reserve(departed[0].user_id, "developer", 1, 0.0, server.settings)
    socket = live_sockets.open_socket(departed[0].user_id, 1000)
    long_ago = time.time() - 10 * (server.settings.request_timeout_s
                       + server.settings.reservation_grace_s)
    most = 0
    for round_ in range(ROUNDS):
        _crash(server, departed[round_ % 2], long_ago)
        _generate(server, active, model)
        _connect(server, active)
        most = max(most, QuotaReservation.select().count(), LiveSocket.select().count())
    # Without sweeping, each table would hold ROUNDS * LEFT_BEHIND dead rows by now.
    assert most <= LEFT_BEHIND + 2, most
    assert [r.id for r in QuotaReservation.select()] == [held.id]
    wait_until(lambda: LiveSocket.select().count() == 1, what="the last socket's row closed")
    assert [s.id for s in LiveSocket.select()] == [socket]
