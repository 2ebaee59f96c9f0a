"""Batch inference jobs through a live server: results per request (a failing one does not
fail the job), the same answers as single requests, refusals at creation, idempotency,
visibility, and cancelling mid-batch. Checkpoints pause 0.2 s (``BITNET_JOB_STEP_DELAY_S``)
so a batch can be caught while it runs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.store import Job
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account, make_account
from tests.support.jobs import register_source, wait_job


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BITNET_JOB_STEP_DELAY_S", "0.2")
    return Settings(data_dir=tmp_path / "data", demo_model=False, webhook_allow_private=True)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("m") / "tiny.gguf", n_layers=1)


@pytest.fixture
def model(live_server, customer: Account, model_file: Path) -> str:
    return register_source(live_server.settings, model_file, customer.user_id, "tiny-llm")


def _batch(live_server, account: Account, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{live_server.url}/v1/inference/batch", json=body, timeout=60,
                      headers={**account.headers, **headers})


def test_each_request_gets_its_answer_or_its_problem(live_server, customer, model):
    requests = [
        {"model": model, "prompt": "Hello", "max_tokens": 4, "temperature": 0},
        {"model": model, "inputs": [[1.0, 2.0]]},  # a tensor for a language model: refused
        {"model": "tiny-llm", "messages": [{"role": "user", "content": "Hi"}],
         "max_tokens": 3, "temperature": 0},
    ]
    r = _batch(live_server, customer, {"requests": requests})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == job["links"]["self"] == f"/v1/inference/{job['id']}"
    assert (job["kind"], job["model_id"]) == ("inference_batch", model)
    done = wait_job(live_server.url, r.headers["location"], customer.headers)
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert (result["succeeded"], result["failed"]) == (2, 1)
    first, bad, chat = result["results"]
    assert [first["index"], bad["index"], chat["index"]] == [0, 1, 2]
    assert first["status"] == "succeeded" and first["response"]["model"] == model
    assert first["response"]["usage"]["completion_tokens"] == len(first["response"]["tokens"])
    assert bad["status"] == "failed" and bad["error"]["status"] == 422
    assert chat["status"] == "succeeded" and chat["response"]["usage"]["completion_tokens"] <= 3
    single = httpx.post(f"{live_server.url}/v1/inference", json=requests[0],
                        headers=customer.headers, timeout=60)
    assert single.status_code == 200, single.text
    assert single.json()["text"] == first["response"]["text"]


def test_a_batch_naming_a_model_it_cannot_run_is_refused_whole(live_server, customer, model,
                                                               model_file):
    stranger = make_account(live_server.settings, "stranger@example.com")
    private = register_source(live_server.settings, model_file, stranger.user_id, "theirs")
    r = _batch(live_server, customer, {"requests": [
        {"model": model, "prompt": "a"}, {"model": private, "prompt": "b"}]})
    assert r.status_code == 404
    assert r.json()["errors"][0]["field"] == "requests.1.model"
    assert Job.select().count() == 0


def test_idempotent_retries_and_visibility(live_server, customer, admin, model):
    body = {"requests": [{"model": model, "prompt": "x", "max_tokens": 1}]}
    key = {"Idempotency-Key": "batch-1"}
    first = _batch(live_server, customer, body, **key).json()
    again = _batch(live_server, customer, body, **key).json()
    assert again["id"] == first["id"] and Job.select().count() == 1
    other = make_account(live_server.settings, "other@example.com")
    url = f"{live_server.url}/v1/inference/{first['id']}"
    assert httpx.get(url, headers=other.headers).status_code == 404
    assert httpx.get(url, headers=admin.headers).status_code == 200
    wrong_kind = httpx.get(f"{live_server.url}/v1/quantize/{first['id']}", headers=customer.headers)
    assert wrong_kind.status_code == 404


def test_cancelling_mid_batch_keeps_the_answers_already_given(live_server, customer, model):
    requests = [{"model": model, "prompt": f"n{i}", "max_tokens": 2} for i in range(6)]
    r = _batch(live_server, customer, {"requests": requests})
    running = wait_job(live_server.url, r.headers["location"], customer.headers,
                       until=lambda j: j["status"] == "running" and j["progress"] > 0)
    assert running["message"].startswith("request ")
    cancel = httpx.post(f"{live_server.url}{running['links']['cancel']}", headers=customer.headers)
    assert cancel.status_code == 200 and cancel.json()["cancel_requested"]
    done = wait_job(live_server.url, r.headers["location"], customer.headers)
    assert done["status"] == "cancelled"
    statuses = [item["status"] for item in done["result"]["results"]]
    assert len(statuses) == 6 and statuses[0] == "succeeded" and statuses[-1] == "cancelled"
    assert done["result"]["succeeded"] == statuses.count("succeeded") < 6
