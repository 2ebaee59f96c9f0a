"""Rules every operation and schema of ``openapi/bitnet.yaml`` must keep.

The spec is the contract the server, the generated SDKs and the fuzzer all read, so its
conventions (errors, security, pagination, idempotency, routing) are checked here once,
for every operation, instead of being trusted to review.
"""

from __future__ import annotations

import copy
import keyword
import re
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from ._support import (
    GROUPS,
    PROBLEM_MEDIA_TYPE,
    SCOPES,
    SPEC_PATH,
    iter_operations,
    iter_refs,
    load_spec,
    path_regex,
    problem_4xx_codes,
    resolve,
    snake_case,
    subschemas,
    walk_schema,
)

SPEC = load_spec()
OPERATIONS = list(iter_operations(SPEC))
UNSECURED = {"login", "refreshToken", "signUp", "getHealth", "getVersion"}
JOB_CREATING = {"quantizeModel", "createQuantizeBatch", "createInferenceBatch"}
CAMEL_CASE = re.compile(r"^[a-z]+(?:[A-Z][a-z0-9]+)*$")


def _ids(operations: list[Any]) -> list[str]:
    return [o.operation_id for o in operations]


def _secured(operation: Any) -> bool:
    return operation.op.get("security", SPEC.get("security")) != []


def _json_schema(response: dict[str, Any]) -> dict[str, Any] | None:
    media = resolve(SPEC, response).get("content", {}).get("application/json")
    return None if media is None else resolve(SPEC, media["schema"])


def _validator(schema: dict[str, Any]) -> OAS30Validator:
    """A validator for ``schema`` in which ``#/components/...`` references resolve."""
    root = {**copy.deepcopy(schema), "components": SPEC["components"]}
    return OAS30Validator(root, format_checker=OAS30Validator.FORMAT_CHECKER)


def test_spec_is_valid_openapi_3_0() -> None:
    spec_dict, base_uri = read_from_filename(str(SPEC_PATH))
    validate(spec_dict, base_uri=base_uri)  # raises with the first violation
    assert re.fullmatch(r"3\.0\.\d+", SPEC["openapi"]), "Connexion 3.3 rejects OpenAPI 3.1"
    assert SPEC["servers"] == [{"url": "/v1"}]


def test_no_openapi_3_1_constructs() -> None:
    """``const``, type arrays, ``type: 'null'`` and schema ``examples`` are 3.1-only."""
    bad = []
    for name, schema in SPEC["components"]["schemas"].items():
        for node in walk_schema(SPEC, schema):
            if "const" in node or isinstance(node.get("type"), list) or node.get("type") == "null":
                bad.append(name)
            if "examples" in node:
                bad.append(f"{name} (examples)")
    assert not bad, f"3.1-only constructs in: {sorted(set(bad))}"


def test_operation_ids_are_unique_camel_case_and_make_handler_names() -> None:
    ids = _ids(OPERATIONS)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    not_camel = [i for i in ids if not CAMEL_CASE.fullmatch(i)]
    assert not not_camel, not_camel
    handlers = [snake_case(i) for i in ids]
    assert all(h.isidentifier() and not keyword.iskeyword(h) for h in handlers), handlers


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.name)
def test_operation_is_documented(operation: Any) -> None:
    op = operation.op
    assert op.get("summary"), "summary missing"
    assert len(op.get("tags", [])) == 1, "exactly one tag (it names the SDK module)"
    assert problem_4xx_codes(SPEC, operation), "no 4xx answered with a Problem"


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.name)
def test_operation_routes_to_its_group_controller(operation: Any) -> None:
    """Controller on the path item and the operation (Connexion reads the latter) agree."""
    controller = operation.path_item.get("x-openapi-router-controller")
    assert controller == operation.op.get("x-openapi-router-controller")
    prefix, _, group = controller.rpartition(".")
    assert prefix == "bitnet_sdk.api" and group in GROUPS, controller
    assert operation.op["tags"] == [group], "tag must equal the controller group"


def test_tags_are_declared_and_described() -> None:
    declared = {t["name"]: t.get("description") for t in SPEC["tags"]}
    assert set(declared) == GROUPS
    assert all(declared.values()), "every tag needs a description"


def test_unsecured_operations_are_exactly_the_public_ones() -> None:
    assert {o.operation_id for o in OPERATIONS if not _secured(o)} == UNSECURED


@pytest.mark.parametrize("operation", [o for o in OPERATIONS if _secured(o)], ids=lambda o: o.name)
def test_secured_operation_states_scope_and_documents_401_403(operation: Any) -> None:
    security = operation.op.get("security")
    assert isinstance(security, list) and len(security) == 2, "state security on the operation"
    bearer, api_key = security
    assert bearer == {"bearer": []} and api_key == {"apiKey": []}
    scopes = operation.op.get("x-scopes", [])
    assert len(scopes) <= 1 and set(scopes) <= SCOPES
    codes = set(problem_4xx_codes(SPEC, operation))
    assert {"401", "403"} <= codes


def test_security_schemes() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    bearer, api_key = schemes["bearer"], schemes["apiKey"]
    # HTTP bearer, not OAuth2: generated clients then send the "Bearer " prefix.
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert bearer["x-bearerInfoFunc"] == "bitnet_sdk.api.security.bearer_info"
    assert bearer["x-refreshUrl"] == "/v1/auth/refresh"
    assert set(bearer["x-scopes"]) == SCOPES
    assert (api_key["type"], api_key["in"], api_key["name"]) == ("apiKey", "header", "X-API-Key")
    assert api_key["x-apikeyInfoFunc"] == "bitnet_sdk.api.security.apikey_info"


def _returns_jobs(response: dict[str, Any]) -> bool:
    schema = _json_schema(response)
    return schema is not None and any(
        node is SPEC["components"]["schemas"]["Job"] for node in walk_schema(SPEC, schema)
    )


def test_job_creating_posts_take_idempotency_key_and_answer_202() -> None:
    job_creating = {
        o.operation_id
        for o in OPERATIONS
        if o.method == "post"
        and "202" in o.op["responses"]
        and _returns_jobs(o.op["responses"]["202"])
    }
    assert job_creating == JOB_CREATING
    for operation in OPERATIONS:
        params = {(p["in"], p["name"]) for p in operation.parameters(SPEC)}
        has_key = ("header", "Idempotency-Key") in params
        assert has_key == (operation.operation_id in JOB_CREATING), operation.name
    key = SPEC["components"]["parameters"]["IdempotencyKey"]["schema"]
    assert key["maxLength"] == 255 and key["type"] == "string"


@pytest.mark.parametrize("operation_id", ["quantizeModel", "createInferenceBatch"])
def test_single_job_creation_answers_location(operation_id: str) -> None:
    (operation,) = [o for o in OPERATIONS if o.operation_id == operation_id]
    assert "Location" in operation.op["responses"]["202"]["headers"]


def _is_page(schema: dict[str, Any] | None) -> bool:
    return schema is not None and {"data", "next_cursor"} <= set(schema.get("properties", {}))


def test_list_operations_paginate_with_cursor_and_limit() -> None:
    lists = [o for o in OPERATIONS if o.operation_id.startswith("list")]
    assert {o.operation_id for o in lists} == {
        "listApiKeys", "listQuantizeJobs", "listModels", "listUsers", "listUpgradeRequests"}
    for operation in OPERATIONS:
        page = _json_schema(operation.op["responses"].get("200", {}))
        assert _is_page(page) == (operation in lists), operation.name
    for operation in lists:
        params = {p["name"]: p for p in operation.parameters(SPEC) if p["in"] == "query"}
        limit = params["limit"]["schema"]
        assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)
        assert params["cursor"]["schema"]["type"] == "string"
        page = _json_schema(operation.op["responses"]["200"])
        assert set(page["required"]) == {"data", "next_cursor"}
        assert page["properties"]["data"]["type"] == "array"
        cursor = resolve(SPEC, page["properties"]["next_cursor"])
        assert cursor["type"] == "string" and cursor["nullable"] is True


def test_every_reference_resolves() -> None:
    broken = []
    for where, ref in iter_refs(SPEC):
        try:
            resolve(SPEC, {"$ref": ref})
        except (KeyError, AssertionError):
            broken.append(f"{where} -> {ref}")
    assert not broken, broken


def test_every_component_is_used() -> None:
    used = {ref for _, ref in iter_refs(SPEC)}
    unused = [
        f"#/components/{kind}/{name}"
        for kind, members in SPEC["components"].items()
        if kind != "securitySchemes"
        for name in members
        if f"#/components/{kind}/{name}" not in used
    ]
    assert unused == ["#/components/responses/NotImplemented"], unused


def test_static_paths_come_before_templated_paths_that_match_them() -> None:
    """Routes match in document order, so ``/quantize/jobs`` must precede ``/quantize/{job_id}``."""
    paths = list(SPEC["paths"])
    shadowed = [
        (p, q)
        for i, p in enumerate(paths)
        for q in paths[i + 1 :]
        if "{" in p and q.count("{") < p.count("{") and path_regex(p).match(q)
    ]
    assert not shadowed, shadowed


def test_problem_schema_and_reusable_error_responses() -> None:
    problem = SPEC["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "errors", "request_id"} <= set(
        problem["properties"]
    )
    field_error = resolve(SPEC, problem["properties"]["errors"]["items"])
    assert set(field_error["properties"]) == {"field", "location", "rule", "message"}
    assert field_error["required"] == ["field", "message"]
    responses = SPEC["components"]["responses"]
    expected = {
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "Conflict",
        "PayloadTooLarge",
        "UnprocessableEntity",
        "TooManyRequests",
        "NotImplemented",
        "ServiceUnavailable",
    }
    assert expected <= set(responses)
    for name, response in responses.items():
        assert list(response["content"]) == [PROBLEM_MEDIA_TYPE], name
    assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(
        responses["TooManyRequests"]["headers"]
    )
    assert "Retry-After" in responses["ServiceUnavailable"]["headers"]


@pytest.mark.parametrize("operation", [o for o in OPERATIONS if _secured(o)], ids=lambda o: o.name)
def test_secured_success_responses_carry_rate_limit_headers(operation: Any) -> None:
    for code, response in operation.op["responses"].items():
        if str(code).startswith("2"):
            headers = response.get("headers", {})
            assert headers.get("RateLimit") == {"$ref": "#/components/headers/RateLimit"}, code
            assert headers.get("RateLimit-Policy") == {
                "$ref": "#/components/headers/RateLimitPolicy"
            }, code


def test_header_parameters_are_strings() -> None:
    """Connexion 3.3 validates header parameters without converting them from text."""
    typed = [
        f"{o.name}: {p['name']}"
        for o in OPERATIONS
        for p in o.parameters(SPEC)
        if p["in"] == "header" and resolve(SPEC, p["schema"]).get("type") != "string"
    ]
    assert not typed, typed


def _request_schemas(operation: Any) -> list[tuple[str, dict[str, Any]]]:
    """(label, schema) for every parameter and request body media type of ``operation``."""
    found = [(f"parameter {p['name']}", p["schema"]) for p in operation.parameters(SPEC)]
    body = resolve(SPEC, operation.op.get("requestBody", {}))
    for media_type, media in body.get("content", {}).items():
        found.append((f"body {media_type}", media["schema"]))
    return found


def _unbounded(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if kind == "string" and not (
        {"enum", "maxLength"} & set(schema) or schema.get("format") == "binary"
    ):
        return "string without maxLength or enum"
    if kind == "array" and "maxItems" not in schema:
        return "array without maxItems"
    if kind in ("integer", "number") and not {"minimum", "maximum"} <= set(schema):
        return "number without minimum and maximum"
    if kind == "object" and schema.get("additionalProperties") is not False:
        return "object accepting unknown properties"
    return None


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.name)
def test_request_inputs_are_bounded_and_strict(operation: Any) -> None:
    """Fuzzers send extreme values; bounds let the server answer 4xx instead of failing."""
    problems = []
    for label, schema in _request_schemas(operation):
        for node in walk_schema(SPEC, schema):
            reason = _unbounded(node)
            if reason:
                problems.append(f"{label}: {reason}: {node}")
    assert not problems, "\n".join(problems)


def _examples() -> list[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every schema-level and media-type example."""
    found = []
    for name, component in SPEC["components"]["schemas"].items():
        stack = [(name, component)]
        while stack:
            where, node = stack.pop()
            if "example" in node:
                found.append((where, node, node["example"]))
            stack.extend((f"{where}/…", sub) for sub in subschemas(node) if "$ref" not in sub)
    for operation in OPERATIONS:
        body = resolve(SPEC, operation.op.get("requestBody", {}))
        media_types = list(body.get("content", {}).items())
        for response in operation.op["responses"].values():
            media_types += list(resolve(SPEC, response).get("content", {}).items())
        for media_type, media in media_types:
            where = f"{operation.name} {media_type}"
            if "example" in media:
                found.append((where, media["schema"], media["example"]))
            for key, example in media.get("examples", {}).items():
                found.append((f"{where} {key}", media["schema"], example["value"]))
    return found


EXAMPLES = _examples()


@pytest.mark.parametrize(("where", "schema", "example"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_examples_match_their_schemas(where: str, schema: dict[str, Any], example: Any) -> None:
    errors = sorted(str(e.message) for e in _validator(schema).iter_errors(example))
    assert not errors, errors


def test_examples_cover_the_main_schemas() -> None:
    documented = {where.split("/")[0] for where, _, _ in EXAMPLES}
    for name in (
        "Problem",
        "Job",
        "Model",
        "InferenceRequest",
        "InferenceResponse",
        "QuantizeRequest",
        "QuantizeResult",
        "ModelMetadata",
        "ValidationReport",
        "TokenResponse",
        "ApiKeyCreated",
        "Health",
        "Devices",
        "AccountLimits",
    ):
        assert name in documented, name


def test_timestamps_are_date_times() -> None:
    wrong = []
    for name, schema in SPEC["components"]["schemas"].items():
        for node in walk_schema(SPEC, schema):
            for prop, sub in node.get("properties", {}).items():
                target = resolve(SPEC, sub)
                if prop.endswith("_at") and target.get("format") != "date-time":
                    wrong.append(f"{name}.{prop}")
    assert not wrong, wrong


def test_sse_stream_documents_each_event() -> None:
    (stream,) = [o for o in OPERATIONS if o.operation_id == "streamInference"]
    media = stream.op["responses"]["200"]["content"]["text/event-stream"]
    # The body is text (client generators then hand it over unparsed, not JSON-decode it);
    # each event's data schema is a component named in x-sse-events.
    assert media["schema"] == {"type": "string"}
    assert set(media["x-sse-events"]) == {"token", "done", "error"}
    assert all(set(ref) == {"$ref"} for ref in media["x-sse-events"].values())
    assert media["x-sse-events"]["error"] == {"$ref": "#/components/schemas/Problem"}
    done = resolve(SPEC, media["x-sse-events"]["done"])
    assert {"usage", "timing"} <= set(done["required"])


def test_openai_streams_are_text_with_their_chunk_schema_named() -> None:
    with (SPEC_PATH.parent / "openai.yaml").open(encoding="utf-8") as f:
        openai = yaml.safe_load(f)
    streams = {op.operation_id: op.op["responses"]["200"]["content"]["text/event-stream"]
               for op in iter_operations(openai)
               if "text/event-stream" in op.op["responses"].get("200", {}).get("content", {})}
    assert len(streams) == 2, streams.keys()
    for media in streams.values():
        assert media["schema"]["type"] == "string" and "$ref" not in media["schema"]
        assert resolve(openai, media["x-sse-data"])["type"] == "object"


def test_websocket_is_documented_but_not_routed() -> None:
    assert not any("/ws" in path for path in SPEC["paths"]), "Connexion must not route it"
    ws = SPEC["x-websockets"]["/inference/ws"]
    client = resolve(SPEC, ws["clientMessages"])["discriminator"]["mapping"]
    server = resolve(SPEC, ws["serverMessages"])["discriminator"]["mapping"]
    assert {"auth", "generate", "cancel", "subscribe"} <= set(client)
    assert {"token", "done", "error", "progress"} <= set(server)
    for mapping in (client, server):
        for kind, ref in mapping.items():
            message = resolve(SPEC, {"$ref": ref})
            parts = [message] + [resolve(SPEC, p) for p in message.get("allOf", [])]
            types = [
                p["properties"]["type"]["enum"] for p in parts if "type" in p.get("properties", {})
            ]
            assert types == [[kind]], f"{ref}: 'type' must be exactly {kind!r}"
    assert "bearer" in ws["subprotocols"]
