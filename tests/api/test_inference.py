"""POST /v1/inference through a live server: answers checked against the runtime run
locally on the same file, seeds, stop strings, chat templates, model access, input rules,
dense models, usage, and the model cache's limits (queue, memory budget, timeout, body size,
client disconnects)."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import bitnet_sdk
from bitnet_sdk.config import Settings
from bitnet_sdk.model.chat import chat_prompt_ids
from bitnet_sdk.model.metadata import model_metadata
from tests.conftest import Account, make_account
from tests.support.inference import (
    LLAMA3_CHAT_TEMPLATE,
    ModelFiles,
    cache_stats,
    inference_settings,
    register_model,
    schema_errors,
    wait_until,
)

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("models"))


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return inference_settings(tmp_path, **getattr(request, "param", {}))


@pytest.fixture
def small(files: ModelFiles) -> Path:
    return files.get(context_length=4096, chat_template=LLAMA3_CHAT_TEMPLATE)


@pytest.fixture
def model_id(live_server: Any, customer: Account, small: Path) -> str:
    return register_model(live_server.settings, small, owner_id=customer.user_id, name="tiny")


@pytest.fixture
def endless_id(live_server: Any, customer: Account, files: ModelFiles) -> str:
    """A model that never ends a generation early: it is still running when tests look."""
    return register_model(live_server.settings, files.endless(), owner_id=customer.user_id,
                          name="endless")


def infer(live_server: Any, account: Account, timeout: float = 60, **body: Any) -> httpx.Response:
    return httpx.post(live_server.url + "/v1/inference", json=body, headers=account.headers,
                      timeout=timeout)


def test_greedy_completion_with_probabilities_matches_the_runtime(
        live_server: Any, customer: Account, model_id: str, small: Path) -> None:
    r = infer(live_server, customer, model=model_id, prompt=PROMPT, max_tokens=12,
              temperature=0, return_probabilities=True, top_logprobs=3)
    assert r.status_code == 200, r.text
    body = r.json()
    local = bitnet_sdk.load(small, backend="numpy").complete(
        PROMPT, max_tokens=12, temperature=0, logprobs=3)
    assert [t["token_id"] for t in body["tokens"]] == list(local.token_ids)
    assert body["text"] == local.text
    assert [t["logprob"] for t in body["tokens"]] == pytest.approx(local.logprobs, abs=1e-9)
    for token, top in zip(body["tokens"], local.top_logprobs, strict=True):
        assert [a["token_id"] for a in token["top_logprobs"]] == [a.token_id for a in top]
        assert token["top_logprobs"][0]["token_id"] == token["token_id"]  # greedy
    assert body["finish_reason"] == {"length": "length", "eos": "stop"}[local.finish_reason]
    assert body["model"] == model_id and body["kind"] == "llm"
    assert body["id"].startswith("req_") and r.headers["x-request-id"] == body["id"]
    params = model_metadata(small)["ternary_parameters"]
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(local.prompt_ids)
    assert usage["completion_tokens"] == len(local.token_ids)
    total = usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["total_tokens"] == total
    assert usage["compute_units"] == math.ceil(total * params / 1e6) / 1e6 > 0
    timing = body["timing"]
    assert timing["total_ms"] >= timing["prompt_ms"] + timing["generation_ms"] > 0
    assert not schema_errors("InferenceResponse", body)


def test_same_seed_same_sample(live_server: Any, customer: Account, model_id: str) -> None:
    def sample(seed: int) -> list[int]:
        r = infer(live_server, customer, model=model_id, prompt=PROMPT, max_tokens=16,
                  temperature=1.0, top_k=0, top_p=1.0, seed=seed)
        assert r.status_code == 200, r.text
        assert r.json()["tokens"][0]["logprob"] is None  # not asked for
        return [t["token_id"] for t in r.json()["tokens"]]

    first = sample(7)
    assert sample(7) == first
    assert sample(8) != first


def test_stop_string_ends_the_text_before_it(live_server: Any, customer: Account,
                                             model_id: str) -> None:
    full = infer(live_server, customer, model=model_id, prompt=PROMPT, max_tokens=24,
                 temperature=0).json()["text"]
    start = next(i for i in range(3, len(full) - 2)
                 if "\ufffd" not in full[i:i + 2] and full.index(full[i:i + 2]) == i)
    stop = full[start:start + 2]
    r = infer(live_server, customer, model=model_id, prompt=PROMPT, max_tokens=24,
              temperature=0, stop=[stop, "never appears"])
    assert r.status_code == 200, r.text
    assert r.json()["text"] == full[:start]
    assert r.json()["finish_reason"] == "stop"


def test_chat_messages_use_the_models_template(live_server: Any, customer: Account,
                                               model_id: str, small: Path) -> None:
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is ternary?"}]
    r = infer(live_server, customer, model="tiny", messages=messages, max_tokens=6,
              temperature=0)
    assert r.status_code == 200, r.text
    model = bitnet_sdk.load(small, backend="numpy")
    ids = chat_prompt_ids(model.tokenizer, messages)
    local = model.complete(ids, max_tokens=6, temperature=0)
    assert r.json()["usage"]["prompt_tokens"] == len(ids)
    assert [t["token_id"] for t in r.json()["tokens"]] == list(local.token_ids)


def test_models_are_found_if_visible(live_server: Any, customer: Account, admin: Account,
                                     small: Path) -> None:
    other = make_account(live_server.settings, "other@example.com")
    settings = live_server.settings
    private = register_model(settings, small, owner_id=other.user_id, name="secret")
    public = register_model(settings, small, owner_id=other.user_id, name="shared", public=True)
    pending = register_model(settings, small, owner_id=customer.user_id, name="pending",
                             status="pending_upload")
    ask = {"prompt": "Hi", "max_tokens": 1}
    assert infer(live_server, customer, model=private, **ask).status_code == 404
    assert infer(live_server, customer, model="secret", **ask).status_code == 404
    assert infer(live_server, customer, model="shared", **ask).status_code == 404  # not theirs
    assert infer(live_server, customer, model=public, **ask).status_code == 200
    assert infer(live_server, other, model="secret", **ask).status_code == 200
    assert infer(live_server, admin, model=private, **ask).status_code == 200
    missing = infer(live_server, customer, model=pending, **ask)
    assert missing.status_code == 409
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["request_id"].startswith("req_")


def test_requests_a_language_model_cannot_take_are_422(
        live_server: Any, customer: Account, model_id: str) -> None:
    for extra in [
        {},
        {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
        {"inputs": [[1.0, 2.0]]},
        {"prompt": "a", "top_logprobs": 2},
        {"prompt": "a" * 20000},  # more tokens than the context window
    ]:
        r = infer(live_server, customer, model=model_id, **extra)
        assert r.status_code == 422, (extra, r.text)
        assert r.headers["content-type"] == "application/problem+json"


def test_dense_model_predicts_like_the_runtime(live_server: Any, customer: Account,
                                               tmp_path: Path) -> None:
    from bitnet_sdk.quantization.pipeline import quantize
    from tests.quantization._support import build_onnx_mlp

    onnx_path = tmp_path / "mlp.onnx"
    build_onnx_mlp(onnx_path, sizes=(8, 32, 4), seed=5)
    gguf = tmp_path / "mlp.gguf"
    x = np.random.default_rng(3).standard_normal((3, 8)).astype(np.float32)
    quantize(onnx_path, gguf, "tq2_0", calibration=x, backend="numpy")
    dense = register_model(live_server.settings, gguf, owner_id=customer.user_id, name="mlp",
                           kind="dense")
    r = infer(live_server, customer, model=dense, inputs=x.tolist(), return_probabilities=True)
    assert r.status_code == 200, r.text
    body = r.json()
    local = bitnet_sdk.load(gguf, backend="numpy").predict(x)
    assert np.allclose(body["outputs"], local.output, atol=1e-6)
    assert np.allclose(body["probabilities"], local.probabilities, atol=1e-6)
    assert body["predictions"] == local.labels.tolist()
    assert body["kind"] == "dense" and "text" not in body
    assert body["usage"]["compute_units"] > 0 and body["usage"]["total_tokens"] == 0
    assert infer(live_server, customer, model=dense, inputs=[[1.0] * 3]).status_code == 422
    assert infer(live_server, customer, model=dense, prompt="hi").status_code == 422
    stream = httpx.post(live_server.url + "/v1/inference/stream", headers=customer.headers,
                        json={"model": dense, "inputs": x.tolist()})
    assert stream.status_code == 422


def test_usage_is_recorded_with_the_answer(live_server: Any, customer: Account,
                                           model_id: str) -> None:
    from bitnet_sdk.store.models import UsageRecord

    usage = infer(live_server, customer, model=model_id, prompt=PROMPT, max_tokens=5).json()["usage"]
    rows = list(UsageRecord.select().where(UsageRecord.user == customer.user_id))
    assert sum(r.tokens_in for r in rows) == usage["prompt_tokens"]
    assert sum(r.tokens_out for r in rows) == usage["completion_tokens"]
    assert sum(r.compute_units for r in rows) == pytest.approx(usage["compute_units"])


# One sequence per batch: the second request waits in the queue, the third finds it full.
@pytest.mark.parametrize("settings", [{"model_queue_size": 1, "max_batch_size": 1}],
                         indirect=True)
def test_full_queue_answers_503_with_retry_after(live_server: Any, customer: Account,
                                                 endless_id: str) -> None:
    url = live_server.url + "/v1/inference"
    client = httpx.Client(headers=customer.headers, timeout=60)
    with client.stream("POST", url + "/stream", json={
            "model": endless_id, "prompt": PROMPT, "max_tokens": 8000}) as busy:
        assert busy.status_code == 200  # answered at its first token: it holds the model
        queued: list[httpx.Response] = []
        waiter = threading.Thread(target=lambda: queued.append(client.post(url, json={
            "model": endless_id, "prompt": PROMPT, "max_tokens": 2})))
        waiter.start()
        wait_until(lambda: cache_stats(live_server)["queued"] == 1, what="second request queued")
        refused = client.post(url, json={"model": endless_id, "prompt": PROMPT, "max_tokens": 2})
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
    waiter.join(30)  # closing the stream cancelled the first request: the queued one runs
    assert queued and queued[0].status_code == 200
    client.close()


@pytest.mark.parametrize("settings", [{"model_cache_bytes": 1_000_000}], indirect=True)
def test_least_recently_used_model_is_evicted_under_the_budget(
        live_server: Any, customer: Account, admin: Account, files: ModelFiles,
        model_id: str) -> None:
    other = files.get(context_length=4096, seed=1)
    second = register_model(live_server.settings, other, owner_id=customer.user_id, name="b")

    def loaded() -> list[str]:
        r = httpx.get(live_server.url + "/v1/status", headers=admin.headers)
        assert r.status_code == 200, r.text
        return [m["model_id"] for m in r.json()["loaded_models"]]

    for mid, expected in [(model_id, [model_id]), (second, [second]), (model_id, [model_id])]:
        assert infer(live_server, customer, model=mid, prompt="Hi", max_tokens=1).status_code == 200
        assert loaded() == expected


@pytest.mark.parametrize("settings", [{"request_timeout_s": 0.5}], indirect=True)
def test_request_timeout_is_504_and_stops_the_work(live_server: Any, customer: Account,
                                                   endless_id: str) -> None:
    r = infer(live_server, customer, model=endless_id, prompt=PROMPT, max_tokens=8000)
    assert r.status_code == 504, r.text
    assert r.headers["content-type"] == "application/problem+json"
    wait_until(lambda: cache_stats(live_server)["running"] == 0, what="generation stopped")


def test_client_disconnect_cancels_the_generation(live_server: Any, customer: Account,
                                                  admin: Account, endless_id: str) -> None:
    import http.client
    import json
    from urllib.parse import urlsplit

    from bitnet_sdk.store.models import UsageRecord

    def tokens_out() -> float:
        r = httpx.get(live_server.url + "/v1/metrics", headers=admin.headers, timeout=30)
        assert r.status_code == 200, r.text
        return sum(float(line.split()[1]) for line in r.text.splitlines()
                   if line.startswith("bitnet_inter_token_latency_seconds_count"))

    url = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    body = json.dumps({"model": endless_id, "prompt": PROMPT, "max_tokens": 8000})
    connection.request("POST", "/v1/inference", body, headers={
        **customer.headers, "Content-Type": "application/json"})
    # The events to wait on: the generation is running and producing tokens ...
    wait_until(lambda: tokens_out() >= 2, timeout=120, what="tokens are generated")
    assert cache_stats(live_server)["running"] == 1
    assert connection.sock is not None
    connection.close()  # ... then the client goes away without a word
    # Running ends only when the server noticed the disconnect and stopped the generation.
    wait_until(lambda: cache_stats(live_server)["running"] == 0, timeout=60,
               what="generation stopped")
    wait_until(lambda: UsageRecord.select().where(UsageRecord.user == customer.user_id)
               .exists(), what="usage recorded")
    produced = sum(r.tokens_out for r in UsageRecord.select().where(
        UsageRecord.user == customer.user_id))
    assert 0 < produced < 8000


def test_bodies_over_the_limit_are_413_before_validation(live_server: Any,
                                                         customer: Account) -> None:
    from bitnet_sdk.server.limits import INFERENCE_JSON_LIMIT

    rows = INFERENCE_JSON_LIMIT // (4 * 60000) + 1  # "0.0," per number
    r = infer(live_server, customer, model="mdl_0123456789abc", inputs=[[0.0] * 60000] * rows)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_batching_metrics_move(live_server: Any, customer: Account, admin: Account,
                               model_id: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def samples() -> dict[str, float]:
        r = httpx.get(live_server.url + "/v1/metrics", headers=admin.headers)
        assert r.status_code == 200, r.text
        return {s.name: s.value for f in text_string_to_metric_families(r.text)
                for s in f.samples}

    before = samples()
    r = infer(live_server, customer, model=model_id, prompt=PROMPT, max_tokens=4,
              temperature=0)
    assert r.status_code == 200, r.text
    tokens = len(r.json()["tokens"])
    after = samples()
    assert after["bitnet_batch_size_count"] > before.get("bitnet_batch_size_count", 0)
    assert after["bitnet_batch_tokens_sum"] >= before.get("bitnet_batch_tokens_sum", 0) + tokens
    assert after["bitnet_time_to_first_token_seconds_count"] == (
        before.get("bitnet_time_to_first_token_seconds_count", 0) + 1)
    assert after["bitnet_inter_token_latency_seconds_count"] == (
        before.get("bitnet_inter_token_latency_seconds_count", 0) + tokens - 1)
    assert after["bitnet_sequences_active"] == 0 and after["bitnet_requests_queued"] == 0


def test_a_disconnected_stream_leaves_the_batch_and_the_others_go_on(
        live_server: Any, customer: Account, endless_id: str) -> None:
    cache = live_server.app.bitnet.model_cache
    url = live_server.url + "/v1/inference/stream"
    body = {"model": endless_id, "prompt": PROMPT, "max_tokens": 8000}
    with httpx.Client(headers=customer.headers, timeout=60) as client, \
            client.stream("POST", url, json=body) as stays:
        lines = stays.iter_lines()
        with client.stream("POST", url, json=body) as goes:
            assert goes.status_code == 200 and stays.status_code == 200
            wait_until(lambda: cache.batch_stats()["active"] == 2, what="both in the batch")
            both = cache.stats()["used_bytes"]
        # Closed: its sequence leaves before the next step, its KV memory is freed.
        wait_until(lambda: cache.batch_stats()["active"] == 1, what="one left")
        wait_until(lambda: cache.stats()["used_bytes"] < both, what="its memory freed")
        assert cache.stats()["running"] == 1
        seen = 0
        for line in lines:  # the other one still streams
            seen += line == "event: token"
            if seen == 5:
                break
        assert seen == 5
    wait_until(lambda: cache.batch_stats()["active"] == 0, what="both gone")
