"""POST /v1/inference/requests/{request_id}/cancel: a stream stopped by its request id,
on the process that serves it and from another server process (over Redis, or through
the shared database without it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitnet_sdk.config import Settings
from tests.conftest import Account, make_account
from tests.support.inference import ModelFiles, inference_settings, register_model
from tests.support.redis import redis_test_url
from tests.support.servers import Server


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("models"))


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    redis_url = redis_test_url() if getattr(request, "param", "") == "redis" else ""
    return inference_settings(tmp_path, redis_url=redis_url)


def _cancel(url: str, who: Account, request_id: str) -> dict[str, Any]:
    r = httpx.post(url + f"/v1/inference/requests/{request_id}/cancel", headers=who.headers)
    assert r.status_code == 202, r.text
    return dict(r.json())


def _stream_then_cancel(stream_url: str, cancel_url: str, owner: Account, other: Account,
                        model_id: str) -> tuple[list[bool], dict[str, Any]]:
    """Start an endless stream on one server, cancel it through another; the answers and
    the ``done`` event."""
    body = {"model": model_id, "prompt": "hello", "max_tokens": 8000}
    with httpx.Client(headers=owner.headers, timeout=60) as client, \
            client.stream("POST", stream_url + "/v1/inference/stream", json=body) as r:
        assert r.status_code == 200
        rid = r.headers["x-request-id"]
        lines = r.iter_lines()
        next(line for line in lines if line.startswith("data:"))  # running
        answers = [_cancel(cancel_url, other, rid)["running_here"]]  # not theirs: ignored
        answers.append(_cancel(cancel_url, owner, rid)["running_here"])
        data = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    return answers, data[-1]


def test_a_stream_is_cancelled_by_its_request_id(live_server: Any, customer: Account,
                                                 files: ModelFiles) -> None:
    model_id = register_model(live_server.settings, files.endless(), owner_id=customer.user_id,
                              name="endless")
    other = make_account(live_server.settings, "other@example.com")
    answers, done = _stream_then_cancel(live_server.url, live_server.url, customer, other,
                                        model_id)
    assert answers == [False, True]
    assert done["finish_reason"] == "cancelled"
    assert 0 < done["usage"]["completion_tokens"] < 8000


@pytest.fixture
def child(live_server: Any) -> Iterator[Server]:
    server = Server(live_server.settings)  # same database, data folder, Redis and secret
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("settings", ["redis", "database"], indirect=True)
def test_a_stream_in_another_process_is_cancelled(
        live_server: Any, customer: Account, files: ModelFiles, child: Server) -> None:
    model_id = register_model(live_server.settings, files.endless(), owner_id=customer.user_id,
                              name="endless")
    other = make_account(live_server.settings, "other@example.com")
    answers, done = _stream_then_cancel(child.url, live_server.url, customer, other, model_id)
    assert answers == [False, False]  # the stream runs in the child, not here
    assert done["finish_reason"] == "cancelled"
