"""``/v1/metrics`` moves with real traffic: every family the server declares is scraped
before and after inference requests (two models under a budget that holds one, so one
is evicted), a streamed request and a batch job on a live server, and must have changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bitnet_sdk.config import Settings
from tests.conftest import Account
from tests.support.inference import ModelFiles, inference_settings, register_model
from tests.support.jobs import wait_job

#: Every family the server exports (histograms and counters by their family name).
FAMILIES = (
    "bitnet_http_requests",
    "bitnet_http_request_duration_seconds",
    "bitnet_generated_tokens",
    "bitnet_jobs",
    "bitnet_loaded_models",
    "bitnet_model_cache_bytes",
    "bitnet_model_cache_hits",
    "bitnet_model_cache_misses",
    "bitnet_model_cache_loads",
    "bitnet_model_cache_evictions",
    "bitnet_model_queue_depth",
    "bitnet_time_to_first_token_seconds",
    "bitnet_generation_tokens_per_second",
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Room for one of the two models below: the second evicts the first.
    return inference_settings(tmp_path, model_cache_bytes=1_000_000)


def scrape(url: str, admin: Account) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    r = httpx.get(url + "/v1/metrics", headers=admin.headers)
    assert r.status_code == 200, r.text
    families: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(r.text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
                   if not s.name.endswith("_created")}
        families[family.name] = samples
    return families


def test_every_family_moves_with_traffic(live_server: Any, admin: Account, customer: Account,
                                         tmp_path: Path) -> None:
    files = ModelFiles(tmp_path / "models")
    first = register_model(live_server.settings, files.get(context_length=4096),
                           owner_id=customer.user_id, name="a")
    second = register_model(live_server.settings, files.get(context_length=4096, seed=1),
                            owner_id=customer.user_id, name="b")
    before = scrape(live_server.url, admin)
    assert set(FAMILIES) <= set(before), sorted(set(FAMILIES) - set(before))

    def infer(model: str) -> None:
        r = httpx.post(live_server.url + "/v1/inference", headers=customer.headers, timeout=60,
                       json={"model": model, "prompt": "Hello there", "max_tokens": 4,
                             "temperature": 0})
        assert r.status_code == 200, r.text

    infer(first)
    infer(first)   # a cache hit
    infer(second)  # evicts the first
    with httpx.stream("POST", live_server.url + "/v1/inference/stream", headers=customer.headers,
                      json={"model": second, "prompt": "Hi", "max_tokens": 3}, timeout=60) as r:
        assert r.status_code == 200
        r.read()
    batch = httpx.post(live_server.url + "/v1/inference/batch", headers=customer.headers,
                       timeout=60, json={"requests": [{"model": second, "prompt": "Yo",
                                                       "max_tokens": 2}]})
    assert batch.status_code == 202, batch.text
    assert wait_job(live_server.url, batch.headers["location"], customer.headers)["status"] == "succeeded"

    after = scrape(live_server.url, admin)
    unchanged = [name for name in FAMILIES if after.get(name) == before.get(name)]
    assert not unchanged, unchanged

    def value(family: str, sample: str, **labels: str) -> float:
        return after[family][(sample, tuple(sorted(labels.items())))]

    assert value("bitnet_loaded_models", "bitnet_loaded_models") == 1  # as /v1/status says
    status = httpx.get(live_server.url + "/v1/status", headers=admin.headers).json()
    assert [m["model_id"] for m in status["loaded_models"]] == [second]
    assert value("bitnet_model_cache_evictions", "bitnet_model_cache_evictions_total") == 1
    assert value("bitnet_model_cache_loads", "bitnet_model_cache_loads_total") == 2
    assert value("bitnet_model_cache_hits", "bitnet_model_cache_hits_total") >= 1
    assert value("bitnet_jobs", "bitnet_jobs_total", kind="inference_batch", status="succeeded") == 1
    assert value("bitnet_model_queue_depth", "bitnet_model_queue_depth", model=second) == 0
    generated = sum(v for (name, _), v in after["bitnet_generated_tokens"].items())
    assert generated >= 5  # at least one token per request
    ttft_count = sum(v for (name, _), v in after["bitnet_time_to_first_token_seconds"].items()
                     if name.endswith("_count"))
    assert ttft_count == 5  # three requests, one stream, one batch item
