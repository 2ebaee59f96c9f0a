"""The intermediate representation built from the project's spec: every operation, the
conventions the SDK helpers rely on, and the schema rules (allOf merges, nullable
references, inline names)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from bitnet_generators.ir import Api, TypeRef
from bitnet_generators.operations import HTTP_METHODS
from bitnet_generators.spec import DEFAULT_SPEC


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_SPEC.read_text(encoding="utf-8"))


def raw_operations(raw: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {op["operationId"]: (method.upper(), path, op)
            for path, item in raw["paths"].items() for method in HTTP_METHODS if (op := item.get(method))}


def test_every_operation_once_with_its_method_and_path(api: Api, raw: dict[str, Any]) -> None:
    ops = raw_operations(raw)
    assert [op.id for op in api.operations] == sorted(ops)
    for op in api.operations:
        assert (op.method, op.path) == ops[op.id][:2]


def test_security_follows_the_spec(api: Api, raw: dict[str, Any]) -> None:
    ops = raw_operations(raw)
    open_ops = {name for name, (_, _, op) in ops.items() if op.get("security", raw["security"]) == []}
    assert {op.id for op in api.operations if not op.secured} == open_ops
    assert {"login", "refreshToken", "getHealth"} <= open_ops
    assert api.auth.bearer and api.auth.api_key_header == "X-API-Key"
    # HTTP bearer: no OAuth2 tokenUrl; the refresh endpoint is the scheme's x-refreshUrl.
    assert (api.base_path, api.auth.token_path, api.auth.refresh_path) == ("/v1", None, "/auth/refresh")
    assert api.problem_type == "Problem"


def test_idempotency_pagination_and_waiters_are_detected(api: Api, raw: dict[str, Any]) -> None:
    def params(op: dict[str, Any], item: dict[str, Any]) -> list[str]:
        refs = [p.get("$ref", "") for p in op.get("parameters", []) + item.get("parameters", [])]
        return [r.rsplit("/", 1)[-1] for r in refs]

    items = {op["operationId"]: item for item in raw["paths"].values() for m in HTTP_METHODS if (op := item.get(m))}
    ops = raw_operations(raw)
    idem = {n for n, (_, _, op) in ops.items() if "IdempotencyKey" in params(op, items[n])}
    paged = {n for n, (_, _, op) in ops.items() if "Cursor" in params(op, items[n])}
    assert idem == {"quantizeModel", "createQuantizeBatch", "createInferenceBatch"}
    assert {op.id for op in api.operations if op.idempotency_header == "Idempotency-Key"} == idem
    assert {op.id for op in api.operations if op.pagination} == paged
    for op in api.operations:
        if op.pagination:
            assert op.pagination.item.kind == "named" and op.pagination.next_field == "next_cursor"
    waiters = {op.id: op.waiter.terminal for op in api.operations if op.waiter}
    assert waiters == {"getQuantizeJob": ("succeeded", "failed", "cancelled"),
                       "getInferenceJob": ("succeeded", "failed", "cancelled")}


def test_streaming_operation_events(api: Api) -> None:
    (stream,) = [op for op in api.operations if op.result.encoding == "sse"]
    assert stream.id == "streamInference"
    events = {e.name: (e.type.name, e.error) for e in stream.result.events}
    assert events == {"token": ("StreamTokenEvent", False), "done": ("StreamDoneEvent", False),
                      "error": ("Problem", True)}


def test_bodies_and_results(api: Api) -> None:
    ops = {op.id: op for op in api.operations}
    assert [b.encoding for b in ops["createModel"].bodies] == ["json", "multipart"]
    assert [b.encoding for b in ops["uploadModelFile"].bodies] == ["binary"]
    assert ops["downloadModelFile"].result.encoding == "binary"
    assert ops["downloadModelFile"].result.statuses == (200, 206)
    assert ops["quantizeModel"].result.statuses == (200, 202)
    assert ops["deleteModel"].result.encoding == "none"
    assert ops["getMetrics"].result.encoding == "text"


def test_schema_rules(api: Api) -> None:
    current = api.type("CurrentUser")
    fields = {f.name: f for f in current.fields}
    user = {f.name for f in api.type("User").fields}
    assert user <= set(fields) and fields["credential_type"].required and fields["email"].required
    assert fields["credential_type"].type == TypeRef("named", name="CurrentUserCredentialType")
    metadata = {f.name: f for f in api.type("ModelMetadata").fields}
    assert metadata["tokenizer"].type.nullable  # TokenizerInfo itself is nullable
    assert api.type("AccountLimitsRateLimit").kind == "object"
    checks = api.type("HealthChecks")
    assert checks.additional == TypeRef("named", name="Check")
    assert api.type("WsServerMessage").discriminator == "type"
    assert [v.tag for v in api.type("WsServerMessage").variants] == ["ready", "token", "done", "progress", "error"]
    assert api.type("TensorSample").kind == "union" and api.type("TensorSample").discriminator is None
    job = {f.name: f for f in api.type("Job").fields}
    # A typed union, absent (not null) until there is a result: OpenAPI 3.0 has no nullable union.
    assert job["result"].type == TypeRef("named", name="JobResult") and not job["result"].required
    assert [v.type.name for v in api.type("JobResult").variants] == ["QuantizeResult", "InferenceBatchResult"]
