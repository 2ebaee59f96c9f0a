"""Monthly token quotas are reserved at admission, on every inference path.

Attack: an account whose month allows a few generations fires many at once over every
transport (REST, SSE, OpenAI completions with ``n = 2``, WebSocket ``generate``). A check
of the stored usage lets them all through, since none has finished when the others are
checked; a reservation of each one's worst case (prompt + ``max_tokens``) lets through
only what fits, so the month's usage never passes the quota. Run on a live server over
SQLite and over PostgreSQL (``BITNET_TEST_POSTGRES_URL``). Also: a reservation settles to
the actual usage, a cancelled stream releases it, and a reservation left behind by a
killed process stops counting when it expires.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from bitnet_sdk.config import DEFAULT_TIERS, TierLimits
from bitnet_sdk.server.app import create_app
from bitnet_sdk.server.asgi.testing import ServerThread
from bitnet_sdk.server.run import websocket_routes
from bitnet_sdk.service.accounting import reservations, usage
from bitnet_sdk.store.models import QuotaReservation
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database_url,
)
from tests.conftest import Account, make_account
from tests.support.inference import ModelFiles, inference_settings, register_model, wait_until

QUOTA = 60
LONG = 4000  # a generation the client hangs up on long before its end
TIERS = {**DEFAULT_TIERS, "small": TierLimits(100_000, 50, QUOTA, 1_000_000),
         "long": TierLimits(100_000, 50, LONG + 20, 1_000_000)}
PROMPT = "Once upon a time"
MAX_TOKENS = 8
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("models"))


@pytest.fixture(params=DATABASE_KINDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database_url(request.param, tmp_path) as url:
        settings = inference_settings(tmp_path, database_url=url, tiers=TIERS, workers=0)
        app = create_app(settings)
        with ServerThread(app, websocket_routes=websocket_routes(app)) as thread:
            thread.settings = settings
            yield thread


@pytest.fixture
def owner(server: ServerThread) -> Account:
    return make_account(server.settings, "small@example.com", tier="small")


@pytest.fixture
def endless(server: ServerThread, owner: Account, files: ModelFiles) -> str:
    """Generations of this model always run to ``max_tokens``: usage = the worst case."""
    return register_model(server.settings, files.endless(), owner_id=owner.user_id,
                          name="endless")


def _used(server: ServerThread, owner: Account) -> float:
    limits = httpx.get(server.url + "/v1/account/limits", headers=owner.headers).json()
    return next(q["used"] for q in limits["quotas"] if q["name"] == "inference_tokens")


def _records(owner: Account) -> int:
    """Tokens in the owner's usage records (what was really used, reservations aside)."""
    return sum(r.tokens_in + r.tokens_out for r in usage.UsageRecord.select()
               .where(usage.UsageRecord.user == owner.user_id))


def _held() -> int:
    return QuotaReservation.select().count()


# -- the transports, each answering (admitted?, tokens it says it used) ------------------

def _rest(server: ServerThread, owner: Account, model: str) -> tuple[bool, int]:
    r = httpx.post(server.url + "/v1/inference", headers=owner.headers, timeout=120,
                   json={"model": model, "prompt": PROMPT, "max_tokens": MAX_TOKENS})
    return _answer(r, lambda body: body["usage"]["total_tokens"])


def _sse(server: ServerThread, owner: Account, model: str) -> tuple[bool, int]:
    body = {"model": model, "prompt": PROMPT, "max_tokens": MAX_TOKENS}
    with httpx.stream("POST", server.url + "/v1/inference/stream", headers=owner.headers,
                      json=body, timeout=120) as r:
        if r.status_code != 200:
            r.read()
            return _answer(r, lambda _: 0)
        done = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")][-1]
    return True, done["usage"]["total_tokens"]


def _openai(server: ServerThread, owner: Account, model: str) -> tuple[bool, int]:
    r = httpx.post(server.url + "/openai/v1/completions", headers=owner.headers, timeout=120,
                   json={"model": "endless", "prompt": PROMPT, "max_tokens": MAX_TOKENS, "n": 2})
    if r.status_code == 429:
        assert r.json()["error"]["code"] == "quota_exceeded" or "quota" in r.text, r.text
        return False, 0
    assert r.status_code == 200, r.text
    return True, r.json()["usage"]["total_tokens"]


def _websocket(server: ServerThread, owner: Account, model: str) -> tuple[bool, int]:
    with connect(server.ws_url("/v1/inference/ws"), subprotocols=["bearer", owner.token]) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(json.dumps({"type": "generate", "request_id": "g1", "request": {
            "model": model, "prompt": PROMPT, "max_tokens": MAX_TOKENS}}))
        while True:
            message = json.loads(ws.recv(timeout=120))
            if message["type"] == "done":
                return True, message["usage"]["total_tokens"]
            if message["type"] == "error":
                assert message["error"]["status"] == 429, message
                assert message["error"]["type"].endswith("quota-exceeded"), message
                return False, 0


def _answer(r: httpx.Response, tokens: Callable[[Any], int]) -> tuple[bool, int]:
    if r.status_code == 429:
        assert r.headers["content-type"] == PROBLEM, r.text
        problem = r.json()
        assert problem["type"].endswith("quota-exceeded") and problem["limit"] == QUOTA, problem
        assert int(r.headers["retry-after"]) >= 1
        return False, 0
    assert r.status_code == 200, r.text
    return True, tokens(r.json())


def test_concurrent_generations_never_take_the_month_past_its_quota(server, owner, endless):
    transports = [_rest, _sse, _openai, _websocket] * 4
    start = threading.Barrier(len(transports))

    def send(transport: Callable[[ServerThread, Account, str], tuple[bool, int]]
             ) -> tuple[bool, int]:
        start.wait()
        return transport(server, owner, endless)

    with ThreadPoolExecutor(len(transports)) as pool:
        answers = list(pool.map(send, transports))

    admitted = [tokens for ok, tokens in answers if ok]
    assert admitted and len(admitted) < len(answers), answers  # some ran, some were refused
    wait_until(lambda: _held() == 0, what="every reservation settled")
    assert _records(owner) <= QUOTA
    assert _records(owner) == sum(admitted)
    assert _used(server, owner) == sum(admitted)


def test_a_reservation_settles_to_what_was_used(server, owner, files):
    # A model that may stop early: the reservation (prompt + 40) is more than the use.
    model = register_model(server.settings, files.get(), owner_id=owner.user_id, name="tiny")
    ok, tokens = _rest_with(server, owner, model, max_tokens=40)
    assert ok
    assert _held() == 0
    assert _used(server, owner) == _records(owner) == tokens


def _rest_with(server: ServerThread, owner: Account, model: str,
               max_tokens: int) -> tuple[bool, int]:
    r = httpx.post(server.url + "/v1/inference", headers=owner.headers, timeout=120,
                   json={"model": model, "prompt": PROMPT, "max_tokens": max_tokens,
                         "temperature": 0})
    return _answer(r, lambda body: body["usage"]["total_tokens"])


def test_a_cancelled_stream_gives_back_what_it_did_not_use(server, files):
    owner = make_account(server.settings, "long@example.com", tier="long")
    endless = register_model(server.settings, files.endless(), owner_id=owner.user_id,
                             name="endless")
    body = {"model": endless, "prompt": PROMPT, "max_tokens": LONG}
    with httpx.stream("POST", server.url + "/v1/inference/stream", headers=owner.headers,
                      json=body, timeout=120) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        while not next(lines).startswith("data:"):
            pass
        assert _used(server, owner) > LONG  # its worst case is held, not one token
        # Another generation does not fit while this one holds its worst case.
        refused = httpx.post(server.url + "/v1/inference", headers=owner.headers, timeout=120,
                             json={"model": endless, "prompt": PROMPT, "max_tokens": 12})
        assert refused.status_code == 429, refused.text
    # The client hung up early: what the generation did not use is free again.
    wait_until(lambda: _held() == 0, what="the cancelled stream's reservation released")
    used = _used(server, owner)
    assert used == _records(owner) < LONG
    ok, _ = _rest_with(server, owner, endless, max_tokens=12)
    assert ok


def test_a_reservation_of_a_killed_process_stops_counting_when_it_expires(server, owner):
    settings = server.settings
    then = time.time()
    reservations.reserve(owner.user_id, "small", QUOTA, 0.0, settings, now=then)
    with pytest.raises(usage.QuotaExceeded):
        reservations.reserve(owner.user_id, "small", 1, 0.0, settings, now=then + 1)
    assert _used(server, owner) == QUOTA  # nobody settles it: its process is gone
    expired = then + settings.request_timeout_s + reservations.GRACE_S + 1
    assert usage.month_usage(owner.user_id, now=expired)["inference_tokens"] == 0
    reservations.reserve(owner.user_id, "small", QUOTA, 0.0, settings, now=expired)
    assert _held() == 1  # the expired row was reclaimed by the next reservation
