"""Quantization over HTTP against a live server with one in-server worker: synchronous and
queued jobs, batches, idempotent retries, visibility, and signed webhooks with a retry."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bitnet_sdk.store import Job, ModelRecord
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account, make_account
from tests.support.jobs import register_source, wait_job
from tests.support.webhooks import Receiver, standard_webhooks_valid


@pytest.fixture(scope="module")
def float_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("src") / "f32.gguf", qtype="f32", n_layers=1)


@pytest.fixture
def source(live_server, customer: Account, float_model: Path) -> str:
    return register_source(live_server.settings, float_model, customer.user_id, "tiny")


def _post(live_server, path: str, body: dict, account: Account, **headers: str) -> httpx.Response:
    return httpx.post(f"{live_server.url}/v1{path}", json=body,
                      headers={**account.headers, **headers}, timeout=60)


def test_small_models_are_quantized_within_the_request(live_server, customer, source):
    r = _post(live_server, "/quantize", {"model_id": source, "qtype": "tq2_0"}, customer)
    assert r.status_code == 200, r.text
    job = r.json()
    assert (job["status"], job["progress"], job["attempts"]) == ("succeeded", 1.0, 1)
    assert job["model_id"] == source and job["kind"] == "quantize"
    result = job["result"]
    assert result["source_model_id"] == source and result["qtype"] == "tq2_0"
    assert 0 < result["size_bytes"] < result["source_size_bytes"]
    model = httpx.get(live_server.url + job["links"]["result"], headers=customer.headers).json()
    assert model["id"] == result["model_id"] and model["owner_id"] == customer.user_id
    assert (model["qtype"], model["source_model_id"], model["name"]) == ("tq2_0", source,
                                                                         "tiny-tq2_0")
    assert ModelRecord.get_by_id(model["id"]).quantization_report["job_id"] == job["id"]


def test_async_mode_queues_a_job_that_a_worker_finishes(live_server, customer, source):
    r = _post(live_server, "/quantize", {"model_id": source, "qtype": "i2_s", "mode": "async",
                                         "name": "tiny-bitnet-cpp"}, customer)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == r.json()["links"]["self"] == f"/v1/quantize/{r.json()['id']}"
    job = wait_job(live_server.url, r.headers["location"], customer.headers)
    assert job["status"] == "succeeded", job
    assert job["started_at"] and job["finished_at"] and job["message"]
    model = ModelRecord.get_by_id(job["result"]["model_id"])
    assert (model.name, model.qtype, model.owner_id) == ("tiny-bitnet-cpp", "i2_s",
                                                         customer.user_id)


def test_a_public_model_of_someone_else_becomes_my_model(live_server, customer, float_model):
    other = make_account(live_server.settings, "other@example.com")
    public = register_source(live_server.settings, float_model, other.user_id, "shared",
                             public=True)
    private = register_source(live_server.settings, float_model, other.user_id, "secret")
    r = _post(live_server, "/quantize", {"model_id": public, "qtype": "tq1_0"}, customer)
    assert r.status_code == 200, r.text
    assert ModelRecord.get_by_id(r.json()["result"]["model_id"]).owner_id == customer.user_id
    hidden = _post(live_server, "/quantize", {"model_id": private, "qtype": "tq1_0"}, customer)
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == "application/problem+json"


def test_refusals(live_server, customer, source):
    taken = _post(live_server, "/quantize", {"model_id": source, "qtype": "tq2_0",
                                             "name": "tiny"}, customer)
    assert taken.status_code == 409 and "tiny" in taken.json()["detail"]
    missing = _post(live_server, "/quantize", {"model_id": "mdl_doesnotexist0000",
                                               "qtype": "tq2_0"}, customer)
    assert missing.status_code == 404
    bad_secret = _post(live_server, "/quantize", {
        "model_id": source, "qtype": "tq2_0", "webhook_url": "http://127.0.0.1:9/h",
        "webhook_secret": "whsec_" + "A" * 10 + "=" * 2 + "B" * 26}, customer)
    assert bad_secret.status_code in (400, 422)
    assert Job.select().count() == 0


def test_large_sources_run_as_jobs_and_sync_mode_refuses_them(live_server, customer, source):
    ModelRecord.update(size_bytes=100 * 1024**2).where(ModelRecord.id == source).execute()
    sync = _post(live_server, "/quantize", {"model_id": source, "qtype": "tq2_0",
                                            "mode": "sync"}, customer)
    assert sync.status_code == 422
    assert sync.json()["errors"] == [{"field": "mode", "message": sync.json()["detail"]}]
    auto = _post(live_server, "/quantize", {"model_id": source, "qtype": "tq2_0"}, customer)
    assert auto.status_code == 202
    assert wait_job(live_server.url, auto.headers["location"],
                    customer.headers)["status"] == "succeeded"


def test_a_batch_queues_one_job_per_item_in_order(live_server, customer, source):
    items = [{"model_id": source, "qtype": q} for q in ("tq2_0", "tq1_0", "i2_s")]
    r = _post(live_server, "/quantize/batch", {"items": items}, customer)
    assert r.status_code == 202, r.text
    queued = r.json()["jobs"]
    assert [j["model_id"] for j in queued] == [source] * 3
    finished = [wait_job(live_server.url, j["links"]["self"], customer.headers) for j in queued]
    assert [j["result"]["qtype"] for j in finished] == ["tq2_0", "tq1_0", "i2_s"]
    assert len({j["result"]["model_id"] for j in finished}) == 3


def test_a_batch_is_all_or_nothing(live_server, customer, source):
    unknown = _post(live_server, "/quantize/batch", {"items": [
        {"model_id": source, "qtype": "tq2_0"},
        {"model_id": "mdl_doesnotexist0000", "qtype": "tq2_0"}]}, customer)
    assert unknown.status_code == 404
    sync = _post(live_server, "/quantize/batch", {"items": [
        {"model_id": source, "qtype": "tq2_0"},
        {"model_id": source, "qtype": "tq1_0", "mode": "sync"}]}, customer)
    assert sync.status_code == 422
    assert sync.json()["errors"][0]["field"] == "items.1.mode"
    assert Job.select().count() == 0


def test_an_idempotent_retry_answers_like_the_first_request(live_server, customer, source):
    body = {"model_id": source, "qtype": "tq2_0"}
    first = _post(live_server, "/quantize", body, customer, **{"Idempotency-Key": "retry-1"})
    again = _post(live_server, "/quantize", body, customer, **{"Idempotency-Key": "retry-1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["result"] == first.json()["result"]
    other = _post(live_server, "/quantize", {**body, "qtype": "tq1_0"}, customer,
                  **{"Idempotency-Key": "retry-1"})
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    batch = {"items": [body, {**body, "qtype": "i2_s"}]}
    b1 = _post(live_server, "/quantize/batch", batch, customer, **{"Idempotency-Key": "retry-1"})
    b2 = _post(live_server, "/quantize/batch", batch, customer, **{"Idempotency-Key": "retry-1"})
    assert [j["id"] for j in b1.json()["jobs"]] == [j["id"] for j in b2.json()["jobs"]]
    assert Job.select().count() == 3


def test_jobs_are_private_to_their_owner_and_visible_to_admins(live_server, customer, admin,
                                                               source):
    job = _post(live_server, "/quantize", {"model_id": source, "qtype": "tq2_0"}, customer).json()
    other = make_account(live_server.settings, "nosy@example.com")
    url = f"{live_server.url}/v1/quantize/{job['id']}"
    assert httpx.get(url, headers=other.headers).status_code == 404
    assert httpx.post(url + "/cancel", headers=other.headers).status_code == 404
    assert httpx.get(url, headers=admin.headers).json()["id"] == job["id"]
    listed = httpx.get(f"{live_server.url}/v1/quantize/jobs", headers=other.headers).json()
    assert listed == {"data": [], "next_cursor": None}
    finished = httpx.post(url + "/cancel", headers=customer.headers)
    assert finished.status_code == 409


def test_finished_jobs_are_posted_to_the_webhook_signed_and_retried(live_server, customer,
                                                                    source):
    live_server.app.bitnet.jobs.webhooks.retry_delays_s = (0.2,)
    with Receiver([500, 200]) as receiver:
        r = _post(live_server, "/quantize", {"model_id": source, "qtype": "tq2_0", "mode": "async",
                                             "webhook_url": receiver.url}, customer)
        assert r.status_code == 202, r.text
        secret = r.json()["webhook_secret"]
        first, second = receiver.wait_for(2)
    assert "webhook_secret" not in httpx.get(live_server.url + r.headers["location"],
                                             headers=customer.headers).json()
    for got in (first, second):
        assert standard_webhooks_valid(secret, got.headers, got.body)
        assert got.json()["type"] == "job.succeeded"
        assert got.json()["data"]["id"] == r.json()["id"]
        assert got.json()["data"]["webhook_url"] == receiver.url
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_a_client_secret_signs_the_webhook(live_server, customer, source):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with Receiver([200]) as receiver:
        r = _post(live_server, "/quantize", {"model_id": source, "qtype": "tq2_0",
                                             "webhook_url": receiver.url,
                                             "webhook_secret": secret}, customer)
        assert r.status_code == 200 and "webhook_secret" not in r.json()
        (got,) = receiver.wait_for(1)
    assert standard_webhooks_valid(secret, got.headers, got.body)
