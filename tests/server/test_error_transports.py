"""One error the inference service raises, seen through every transport of a live server.

The service raises one :class:`~bitnet_sdk.service.errors.ApiError` (here: the model is not
ready, 409 ``model-not-ready``); the native API answers it as problem+json (one request and
the event stream), the WebSocket as an ``error`` message carrying the same problem, and the
OpenAI-compatible API as an OpenAI error object with the same status and message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from bitnet_sdk.config import Settings
from tests.conftest import Account
from tests.support.inference import ModelFiles, inference_settings, register_model, schema_errors

PROMPT = "The quick brown fox"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return inference_settings(tmp_path)


@pytest.fixture
def pending_id(live_server: Any, customer: Account, tmp_path: Path) -> str:
    """A model whose file never arrived: every transport must refuse to run it."""
    source = ModelFiles(tmp_path / "models").get()
    return register_model(live_server.settings, source, owner_id=customer.user_id,
                          name="half", status="pending_upload")


def _without_request_id(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k != "request_id"}


def test_one_service_error_renders_alike_on_http_sse_websocket_and_openai(
        live_server: Any, customer: Account, pending_id: str) -> None:
    request = {"model": pending_id, "prompt": PROMPT, "max_tokens": 2}
    with httpx.Client(base_url=live_server.url, headers=customer.headers, timeout=30) as http:
        answer = http.post("/v1/inference", json=request)
        streamed = http.post("/v1/inference/stream", json=request)
        openai = http.post("/openai/v1/completions", json=request)

    # Native HTTP: the problem, with the service's status, slug, title and detail.
    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert _without_request_id(problem) == {
        "type": "urn:bitnet:problem:model-not-ready", "title": "Conflict", "status": 409,
        "detail": f"Model {pending_id} is pending_upload, not ready to run."}
    assert problem["request_id"].startswith("req_")

    # The event stream fails before its first event: the same problem response.
    assert streamed.status_code == 409
    assert streamed.headers["content-type"].startswith("application/problem+json")
    assert _without_request_id(streamed.json()) == _without_request_id(problem)

    # WebSocket: an error message tagged with the client's id, carrying the same problem.
    with connect(live_server.ws_url("/v1/inference/ws"),
                 subprotocols=["bearer", customer.token]) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(json.dumps({"type": "generate", "request_id": "r1", "request": request}))
        message = json.loads(ws.recv(timeout=30))
    assert not schema_errors("WsServerMessage", message), message
    assert (message["type"], message["request_id"]) == ("error", "r1")
    assert _without_request_id(message["error"]) == _without_request_id(problem)
    assert message["error"]["request_id"].startswith("req_")

    # OpenAI: the same status and message as an OpenAI error object.
    assert openai.status_code == 409
    assert openai.headers["content-type"].startswith("application/json")
    assert openai.json() == {"error": {"message": problem["detail"],
                                       "type": "invalid_request_error", "param": "model",
                                       "code": "model_not_ready"}}


def test_one_schema_failure_reads_alike_on_the_native_and_the_openai_api(
        live_server: Any, customer: Account) -> None:
    """Both APIs validate through one validator map: the same rule broken, the same words."""
    with httpx.Client(base_url=live_server.url, headers=customer.headers, timeout=30) as http:
        native = http.post("/v1/inference", json={"model": "mdl_0123456789abc",
                                                  "prompt": PROMPT, "temperature": 5})
        openai = http.post("/openai/v1/completions", json={"model": "any", "prompt": PROMPT,
                                                           "temperature": 5})
    assert native.status_code == openai.status_code == 400
    problem = native.json()
    assert problem["errors"] == [{"field": "temperature", "location": "body", "rule": "maximum",
                                  "message": "must be at most 2"}]
    assert openai.json() == {"error": {"message": problem["detail"],
                                       "type": "invalid_request_error", "param": "temperature",
                                       "code": "invalid_value"}}
