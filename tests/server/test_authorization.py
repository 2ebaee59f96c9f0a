"""Object-level authorization through the live server: no user reads or changes another's things.

User A owns a private model, a quantize job, an inference job and an API key.
User B (same tier, every customer scope) tries every operation of the spec that
names a resource in its path, with A's ids, and the operations that take A's
model in their body. Each must answer ``404`` problem+json (not ``403``: ids
do not leak) — or ``501`` while the operation is not implemented, which makes
that case vacuous until it is. Afterwards A's things are unchanged and still
A's. Lists and usage reports show B nothing of A's. Operator-only operations
refuse customers.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from bitnet_sdk.auth import passwords
from bitnet_sdk.server.spec import iter_operations, load_spec
from bitnet_sdk.store import ApiKey, Job, ModelRecord
from tests.conftest import make_account

PROBLEM = "application/problem+json"
SPEC = load_spec()
OPERATIONS = list(iter_operations(SPEC))
#: Operations that take a model id in their JSON body (not in their path).
MODEL_IN_BODY = ("quantizeModel", "createQuantizeBatch", "runInference", "streamInference",
                 "createInferenceBatch")


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Argon2id with small parameters: the same code path, much faster than production's."""
    monkeypatch.setattr(passwords, "_default", PasswordHasher(time_cost=1, memory_cost=256))


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _example_body(op: dict[str, Any]) -> Any:
    media = _resolve(op.get("requestBody", {})).get("content", {}).get("application/json")
    if media is None:
        return None
    if "example" in media:
        return copy.deepcopy(media["example"])
    if "examples" in media:
        return copy.deepcopy(next(iter(media["examples"].values()))["value"])
    return copy.deepcopy(_resolve(media["schema"]).get("example"))


def _with_model(value: Any, model_id: str) -> Any:
    """``value`` with every model id replaced by ``model_id``."""
    if isinstance(value, dict):
        return {k: _with_model(v, model_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_model(v, model_id) for v in value]
    if isinstance(value, str) and value.startswith("mdl_"):
        return model_id
    return value


class Owned:
    """User A's things, made through the API where it is implemented, else in the store."""

    def __init__(self, server, owner) -> None:
        self.owner = owner
        r = httpx.post(server.url + "/v1/models", json={"name": "a-private"},
                       headers=owner.headers)
        if r.status_code == 201:
            self.model = r.json()["id"]
        else:
            assert r.status_code == 501, r.text
            self.model = ModelRecord.create(owner=owner.user_id, name="a-private").id
        later = datetime.now(timezone.utc) + timedelta(days=1)  # no worker starts them
        self.quantize_job = Job.create(
            owner=owner.user_id, kind="quantize", not_before=later,
            params={"model_id": self.model, "qtype": "tq2_0"}).id
        self.inference_job = Job.create(
            owner=owner.user_id, kind="inference_batch", not_before=later,
            params={"model_id": self.model,
                    "request": {"requests": [{"model": self.model, "prompt": "hi"}]}}).id
        r = httpx.post(server.url + "/v1/api-keys", json={"name": "a-key"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        self.key_id, self.key = r.json()["id"], r.json()["key"]

    def path(self, template: str) -> str:
        job = self.quantize_job if template.startswith("/quantize") else self.inference_job
        return (template.replace("{model_id}", self.model).replace("{job_id}", job)
                .replace("{key_id}", self.key_id))

    def snapshot(self) -> tuple[Any, ...]:
        model = ModelRecord.get_or_none(ModelRecord.id == self.model)
        jobs = [Job.get_by_id(j) for j in (self.quantize_job, self.inference_job)]
        key = ApiKey.get_by_id(self.key_id)
        return (
            None if model is None else (model.owner_id, model.name, model.public,
                                        model.description, model.status),
            [(j.owner_id, j.status, j.cancel_requested) for j in jobs],
            (key.user_id, key.revoked_at),
        )


def _not_implemented(server) -> set[str]:
    httpx.get(server.url + "/v1/version")  # routes are resolved by the first request
    return set(server.app.bitnet.not_implemented)


def _has_header_param(op: dict[str, Any], name: str) -> bool:
    return any(_resolve(p).get("in") == "header" and _resolve(p).get("name") == name
               for p in op.get("parameters", []))


def _request(server, method: str, path: str, headers: dict[str, str], op: dict[str, Any],
             body: Any) -> httpx.Response:
    content = _resolve(op.get("requestBody", {})).get("content", {})
    kwargs: dict[str, Any] = {"headers": dict(headers)}
    if body is not None:
        kwargs["json"] = body
    elif "application/octet-stream" in content:
        kwargs["content"] = b"GGUF" + bytes(60)
        kwargs["headers"]["Content-Type"] = "application/octet-stream"
        if _has_header_param(op, "Content-Range"):  # a resumable upload's piece
            kwargs["headers"]["Content-Range"] = f"bytes 0-63/{len(kwargs['content'])}"
    return httpx.request(method, server.url + "/v1" + path, timeout=60, **kwargs)


FIRE_AND_FORGET = {"cancelInferenceRequest"}


def test_no_user_reaches_another_users_resources(live_server, customer):
    owner = customer
    intruder = make_account(live_server.settings, "intruder@example.com")
    owned = Owned(live_server, owner)
    before = owned.snapshot()
    pending = _not_implemented(live_server)
    checked, intruder_requests = [], 0

    # Operator-only operations refuse customers outright (403, tested below). Cancelling a
    # stream by request id answers 202 to anyone (fire-and-forget) and only ever stops the
    # caller's own streams: tests/api/test_stream_cancel.py has another user try it.
    cases = [(p, m, op, _example_body(op)) for p, m, op in OPERATIONS
             if "{" in p and not _operator_only(op)
             and op["operationId"] not in FIRE_AND_FORGET]
    cases += [(p, m, op, _with_model(_example_body(op), owned.model))
              for p, m, op in OPERATIONS if op["operationId"] in MODEL_IN_BODY]
    assert {op["operationId"] for _, _, op, _ in cases} >= {
        "getModel", "deleteModel", "getQuantizeJob", "cancelInferenceJob", "revokeApiKey"}
    for path, method, op, body in cases:
        r = _request(live_server, method, owned.path(path), intruder.headers, op, body)
        intruder_requests += 1
        if op["operationId"] in pending:
            assert r.status_code in (400, 501), (op["operationId"], r.status_code, r.text)
            continue
        assert r.status_code == 404, (op["operationId"], r.status_code, r.text)
        assert r.headers["content-type"] == PROBLEM
        checked.append(op["operationId"])

    assert owned.snapshot() == before, "another user changed A's resources"
    # Still A's and visible to A (positive control: the ids were real).
    assert httpx.get(live_server.url + "/v1/auth/me",
                     headers={"X-API-Key": owned.key}).status_code == 200
    for template, op_id in (("/models/{model_id}", "getModel"),
                            ("/quantize/{job_id}", "getQuantizeJob"),
                            ("/inference/{job_id}", "getInferenceJob")):
        if op_id not in pending:
            r = httpx.get(live_server.url + "/v1" + owned.path(template), headers=owner.headers)
            assert r.status_code == 200, (op_id, r.text)
    assert "revokeApiKey" in checked  # never vacuous: implemented here

    # Lists show B nothing of A's.
    for path, op_id in (("/models", "listModels"), ("/quantize/jobs", "listQuantizeJobs"),
                        ("/api-keys", "listApiKeys")):
        r = httpx.get(live_server.url + "/v1" + path, headers=intruder.headers)
        intruder_requests += 1
        if op_id in pending:
            continue
        assert r.status_code == 200, (op_id, r.text)
        for ident in (owned.model, owned.quantize_job, owned.inference_job, owned.key_id):
            assert ident not in r.text, (op_id, ident)

    # B's usage is B's alone: exactly the requests B made, none of A's operations.
    r = httpx.get(live_server.url + "/v1/account/usage", params={"group_by": "operation"},
                  headers=intruder.headers)
    report = r.json()
    assert report["totals"]["requests"] == intruder_requests
    assert "createApiKey" not in {b["key"] for b in report["buckets"]}


def _scopes(op: dict[str, Any]) -> list[str]:
    return list(op.get("x-scopes", []))


def _operator_only(op: dict[str, Any]) -> bool:
    return bool({"admin", "metrics"} & set(_scopes(op)))


OPERATOR_ONLY = [(p, m, op) for p, m, op in OPERATIONS if _operator_only(op)]


def _operator_path(server, template: str, customer) -> str:
    """``template`` naming the customer's account, or a fresh upgrade request of theirs."""
    path = template.replace("{user_id}", customer.user_id)
    if "{request_id}" in path:
        tier = httpx.get(server.url + "/v1/account", headers=customer.headers).json()["tier"]
        wanted = next(t for t in ("team", "enterprise") if t != tier)
        r = httpx.post(server.url + "/v1/account/upgrade", json={"tier": wanted},
                       headers=customer.headers)
        assert r.status_code == 202, r.text
        path = path.replace("{request_id}", r.json()["id"])
    return path


def test_operator_operations_refuse_customers(live_server, customer, admin):
    assert {op["operationId"] for _, _, op in OPERATOR_ONLY} >= {
        "getStatus", "getDevices", "getMetrics", "listUsers", "updateUser", "listUpgradeRequests",
        "approveUpgradeRequest", "rejectUpgradeRequest"}
    key = httpx.post(live_server.url + "/v1/api-keys", json={"name": "c"},
                     headers=customer.headers).json()["key"]
    for template, method, op in OPERATOR_ONLY:
        path = _operator_path(live_server, template, customer)
        body = _example_body(op)
        for headers in (customer.headers, {"X-API-Key": key}):
            r = httpx.request(method, live_server.url + "/v1" + path, headers=headers, json=body)
            assert r.status_code == 403, (op["operationId"], r.text)
            assert r.headers["content-type"] == PROBLEM
        r = httpx.request(method, live_server.url + "/v1" + path, headers=admin.headers,
                          json=body)
        assert r.status_code == 200, (op["operationId"], r.text)
