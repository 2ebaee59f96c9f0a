"""POST /v1/inference/stream (Server-Sent Events) read incrementally with httpx: tokens arrive
while the generation runs, every event matches its schema, closing the stream cancels the
generation, and problems are plain responses before the first event, error events after."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitnet_sdk.config import Settings
from tests.conftest import Account
from tests.support.inference import (
    ModelFiles,
    cache_stats,
    inference_settings,
    register_model,
    schema_errors,
    wait_until,
)

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("models"))


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return inference_settings(tmp_path, **getattr(request, "param", {}))


@pytest.fixture
def endless_id(live_server: Any, customer: Account, files: ModelFiles) -> str:
    return register_model(live_server.settings, files.endless(), owner_id=customer.user_id,
                          name="endless")


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse ``text/event-stream`` as it arrives: ``{"event", "id", "data"}`` per event."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield event
                event = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        event[name] = json.loads(value) if name == "data" else value


def stream(live_server: Any, account: Account, **body: Any) -> Any:
    return httpx.stream("POST", live_server.url + "/v1/inference/stream", json=body,
                        headers=account.headers, timeout=60)


def test_tokens_arrive_while_generating_and_closing_cancels(
        live_server: Any, customer: Account, endless_id: str) -> None:
    from bitnet_sdk.store.models import UsageRecord

    with stream(live_server, customer, model=endless_id, prompt=PROMPT, max_tokens=8000,
                temperature=0) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-store"
        received = events(r)
        first = next(received)
        # The first token is here and the generation of the others goes on.
        assert cache_stats(live_server)["running"] == 1
        assert (first["event"], first["id"], first["data"]["index"]) == ("token", "0", 0)
        following = [next(received) for _ in range(3)]
        assert [e["data"]["index"] for e in following] == [1, 2, 3]
    wait_until(lambda: cache_stats(live_server)["running"] == 0, what="generation cancelled")
    records = list(UsageRecord.select().where(UsageRecord.user == customer.user_id))
    assert len(records) == 1 and 4 <= records[0].tokens_out < 8000


def test_events_match_their_schemas_and_the_single_answer(
        live_server: Any, customer: Account, files: ModelFiles) -> None:
    model = register_model(live_server.settings, files.get(), owner_id=customer.user_id,
                           name="small")
    ask = {"model": model, "prompt": PROMPT, "max_tokens": 10, "temperature": 0,
           "return_probabilities": True, "top_logprobs": 2}
    with stream(live_server, customer, **ask) as r:
        received = list(events(r))
    *tokens, done = received
    assert [e["event"] for e in tokens] == ["token"] * len(tokens) and done["event"] == "done"
    assert [e["id"] for e in tokens] == [str(i) for i in range(len(tokens))]
    for e in tokens:
        assert not schema_errors("StreamTokenEvent", e["data"])
        assert len(e["data"]["top_logprobs"]) == 2
    assert not schema_errors("StreamDoneEvent", done["data"])
    assert "id" not in done
    answer = httpx.post(live_server.url + "/v1/inference", json=ask, headers=customer.headers,
                        timeout=60).json()
    assert [e["data"]["token_id"] for e in tokens] == [t["token_id"] for t in answer["tokens"]]
    assert done["data"]["text"] == "".join(e["data"]["text"] for e in tokens) == answer["text"]
    assert done["data"]["usage"] == answer["usage"]
    assert done["data"]["finish_reason"] == answer["finish_reason"]


def test_problems_before_the_first_event_are_problem_responses(
        live_server: Any, customer: Account, endless_id: str) -> None:
    cases = [
        ({"model": "mdl_0123456789abc", "prompt": "x"}, 404),
        ({"model": endless_id}, 422),
        ({"model": endless_id, "prompt": "x", "max_tokens": 0}, 400),
    ]
    for body, status in cases:
        r = httpx.post(live_server.url + "/v1/inference/stream", json=body,
                       headers=customer.headers)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("settings", [{"request_timeout_s": 0.5}], indirect=True)
def test_a_timeout_after_the_first_event_is_an_error_event(
        live_server: Any, customer: Account, endless_id: str) -> None:
    with stream(live_server, customer, model=endless_id, prompt=PROMPT, max_tokens=8000) as r:
        assert r.status_code == 200
        received = list(events(r))
    *tokens, last = received
    assert tokens and all(e["event"] == "token" for e in tokens)
    assert last["event"] == "error"
    assert last["data"]["status"] == 504 and last["data"]["request_id"].startswith("req_")
    assert not schema_errors("Problem", last["data"])
    wait_until(lambda: cache_stats(live_server)["running"] == 0, what="generation stopped")
