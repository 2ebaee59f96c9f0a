"""Quota reservations of a server killed with ``kill -9`` expire; nothing is counted twice.

A server process holds the reservations of the generations it runs. Killed mid-generation,
it settles none of them: their rows stay behind, holding the user's month. Here a real
server (a child process) is killed with SIGKILL while two streams hold most of a user's
token quota, and restarted on the same data folder and database: at first the user's
quota is still held (the reservations have not expired), then, once they expire
(``request_timeout_s`` + ``reservation_grace_s``, short for the test), the quota is usable
again; and the month's usage is exactly the records of what finished — the killed
generations count nothing, the finished one once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from bitnet_sdk.server.lifecycle import open_store
from bitnet_sdk.service.accounting import usage
from bitnet_sdk.store.models import QuotaReservation
from tests.conftest import Account, make_account
from tests.support.inference import ModelFiles, inference_settings, register_model, wait_until
from tests.support.servers import Server

QUOTA = 4000
TIERS = {**DEFAULT_TIERS, "small": TierLimits(100_000, 50, QUOTA, 1_000_000)}
#: Long enough for the restarted server to be asked while the reservations still hold.
TIMEOUT_S = 30.0
GRACE_S = 1.0
PROMPT = "Once upon a time"


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = inference_settings(tmp_path, tiers=TIERS, workers=0, request_timeout_s=TIMEOUT_S,
                                  reservation_grace_s=GRACE_S)
    settings.data_dir.mkdir(parents=True)
    db = open_store(settings.db_url)  # the servers' database (SQLite in the data folder)
    try:
        yield settings
    finally:
        db.close()


@contextlib.contextmanager
def _serving(settings: Settings) -> Iterator[Server]:
    server = Server(settings)
    try:
        yield server
    finally:
        server.close()  # stops it, or reaps it after kill -9, and closes its pipes


def _generate(url: str, owner: Account, model: str) -> httpx.Response:
    return httpx.post(url + "/v1/inference", headers=owner.headers, timeout=120,
                      json={"model": model, "prompt": PROMPT, "max_tokens": 8})


def _used(url: str, owner: Account) -> float:
    limits = httpx.get(url + "/v1/account/limits", headers=owner.headers, timeout=60).json()
    return next(q["used"] for q in limits["quotas"] if q["name"] == "inference_tokens")


def _records(owner: Account) -> int:
    return sum(r.tokens_in + r.tokens_out for r in usage.UsageRecord.select()
               .where(usage.UsageRecord.user == owner.user_id))


def _hold(stack: contextlib.ExitStack, url: str, owner: Account, model: str,
          max_tokens: int) -> Iterator[str]:
    """Start a stream and read up to its first token: its reservation is held. Keep the
    lines it returns (dropping them closes the stream: the client would be gone)."""
    r = stack.enter_context(httpx.stream(
        "POST", url + "/v1/inference/stream", headers=owner.headers, timeout=120,
        json={"model": model, "prompt": PROMPT, "max_tokens": max_tokens}))
    assert r.status_code == 200
    lines = r.iter_lines()
    while not next(lines).startswith("data:"):
        pass
    return lines


def test_reservations_of_a_killed_server_expire_and_nothing_is_counted_twice(
        settings: Settings, tmp_path: Path) -> None:
    owner = make_account(settings, "small@example.com", tier="small")
    # Larger than the usual test model: its generations are still running when it is killed.
    slow = ModelFiles(tmp_path / "models").endless(d_model=512, n_layers=8, d_ff=1024)
    model = register_model(settings, slow, owner_id=owner.user_id, name="endless")
    with _serving(settings) as first:
        finished = _generate(first.url, owner, model)
        assert finished.status_code == 200, finished.text
        done = finished.json()["usage"]
        rest = QUOTA - done["total_tokens"]
        # Two generations whose worst cases (prompt + max_tokens) fill what is left.
        share = rest // 2 - done["prompt_tokens"]
        with contextlib.ExitStack() as streams:
            held = [_hold(streams, first.url, owner, model, share) for _ in range(2)]
            assert _used(first.url, owner) > QUOTA - done["prompt_tokens"] - 8
            first.kill()  # kill -9 while both generations hold their reservations
            streams.pop_all()  # their connections died with the server
            del held
    assert QuotaReservation.select().count() == 2  # nobody settled them
    assert _records(owner) == done["total_tokens"]

    with _serving(settings) as second:
        refused = _generate(second.url, owner, model)
        assert refused.status_code == 429, refused.text  # still held: not expired yet
        assert refused.json()["type"].endswith("quota-exceeded")
        # Once expired they count for nothing: the usage is the one finished generation.
        wait_until(lambda: _used(second.url, owner) == done["total_tokens"],
                   timeout=TIMEOUT_S + GRACE_S + 30, what="the reservations expired")
        again = _generate(second.url, owner, model)
        assert again.status_code == 200, again.text
        total = done["total_tokens"] + again.json()["usage"]["total_tokens"]
        assert _records(owner) == total
        assert _used(second.url, owner) == total
        assert QuotaReservation.select().count() == 0  # the user's next reservation swept them
