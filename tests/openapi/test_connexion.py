"""``openapi/bitnet.yaml`` loaded by Connexion itself, with stand-in handlers.

Spec validators accept things Connexion rejects or routes differently, so the spec is
mounted in a real ``connexion.AsyncApp``: every operation is resolved to a stand-in handler
named by the project's convention (``bitnet_sdk.api.<group>.<snake_case operationId>``),
the security handlers are small fakes, and requests go through Connexion's routing,
security and validation. No ``bitnet_sdk.api`` module is needed.
"""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.datastructures import UploadFile
from starlette.testclient import TestClient

from ._support import SCOPES, iter_operations, load_spec, resolve, snake_case

with warnings.catch_warnings():
    # connexion 3.3 imports RefResolver and RefResolutionError, deprecated since jsonschema 4.18.
    warnings.filterwarnings("ignore", r"jsonschema\.(exceptions\.)?RefResol", DeprecationWarning)
    import connexion
    from connexion.exceptions import OAuthScopeProblem
    from connexion.resolver import Resolver

FAKE_SECURITY = "bitnet_openapi_test_security"
TOKENS = {"all-scopes": sorted(SCOPES), "reader": ["models:read"]}
API_KEY = "test-api-key"
SPEC = load_spec()
OPERATIONS = list(iter_operations(SPEC))


# By operationId (Connexion routes as ``<controller>.<operationId>``).
SCOPES_OF = {o.operation_id: o.op.get("x-scopes", []) for o in OPERATIONS}


def _bearer_info(token: str, request: Any = None) -> dict[str, Any] | None:
    """Like the real one: the operation (from Connexion's routing) names its ``x-scopes``."""
    scopes = TOKENS.get(token)
    if scopes is None:
        return None
    handler = request.scope["extensions"]["connexion_routing"]["operation_id"].rpartition(".")[2]
    if not set(SCOPES_OF[handler]) <= set(scopes):
        raise OAuthScopeProblem(required_scopes=SCOPES_OF[handler], token_scopes=scopes)
    return {"sub": f"usr_{token}", "scope": scopes}


def _apikey_info(key: str) -> dict[str, Any] | None:
    return {"sub": "usr_apikey"} if key == API_KEY else None


def _success(operation_id: str) -> tuple[int, str | None]:
    """Status and media type of the operation's first documented success."""
    (operation,) = [o for o in OPERATIONS if o.operation_id == operation_id]
    code = min(c for c in operation.op["responses"] if str(c).startswith("2"))
    content = operation.op["responses"][code].get("content", {})
    return int(code), next(iter(content), None)


def _handler_for(target: str, operation_id: str) -> Callable[..., Any]:
    """A handler that answers, in ``X-Handler``, which function the convention would call.

    It answers the operation's own success status and media type, since Connexion refuses
    a response whose content type the operation does not declare.
    """
    status, media_type = _success(operation_id)

    async def handler(*args: Any, **kwargs: Any) -> tuple[Any, int, dict[str, str]]:
        for value in kwargs.values():
            if isinstance(value, UploadFile):  # handlers own uploaded files and close them
                await value.close()
        body = kwargs.get("body")
        headers = {"X-Handler": target, "X-User": str(kwargs.get("user"))}
        if isinstance(body, bytes):
            headers["X-Body-Bytes"] = str(len(body))
        if media_type is None:
            return None, status, headers
        payload = {} if media_type == "application/json" else "stand-in"
        return payload, status, {**headers, "Content-Type": media_type}

    return handler


class ConventionResolver(Resolver):
    """``<controller>.<operationId>`` → ``<controller>.<snake_case operationId>``, stand-ins."""

    def __init__(self) -> None:
        super().__init__(function_resolver=self._resolve)

    @staticmethod
    def _resolve(name: str) -> Callable[..., Any]:
        controller, _, operation_id = name.rpartition(".")
        return _handler_for(f"{controller}.{snake_case(operation_id)}", operation_id)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    spec = load_spec()
    schemes = spec["components"]["securitySchemes"]
    schemes["bearer"]["x-bearerInfoFunc"] = f"{FAKE_SECURITY}.bearer_info"
    schemes["apiKey"]["x-apikeyInfoFunc"] = f"{FAKE_SECURITY}.apikey_info"
    fake = types.ModuleType(FAKE_SECURITY)
    fake.bearer_info = _bearer_info  # type: ignore[attr-defined]
    fake.apikey_info = _apikey_info  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, FAKE_SECURITY, fake)
        app = connexion.AsyncApp(__name__)
        app.add_api(spec, resolver=ConventionResolver(), strict_validation=True)
        with app.test_client() as test_client:
            yield test_client


def _example_request(operation: Any) -> dict[str, Any]:
    """Keyword arguments for ``client.request`` that satisfy the operation's schema."""
    url = "/v1" + operation.path
    for param in operation.parameters(SPEC):
        if param["in"] == "path":
            example = resolve(SPEC, param["schema"])["example"]
            url = url.replace("{" + param["name"] + "}", example)
    kwargs: dict[str, Any] = {"method": operation.method.upper(), "url": url, "headers": {}}
    if operation.op.get("security") != []:
        kwargs["headers"]["Authorization"] = "Bearer all-scopes"
    for param in operation.parameters(SPEC):
        if param["in"] == "header" and param.get("required"):
            kwargs["headers"][param["name"]] = str(resolve(SPEC, param["schema"])["example"])
    content = resolve(SPEC, operation.op.get("requestBody", {})).get("content", {})
    if "application/json" in content:
        example = resolve(SPEC, content["application/json"]["schema"]).get("example")
        if example is not None:
            kwargs["json"] = example
    elif "application/octet-stream" in content:
        kwargs["content"] = b"GGUF" + bytes(60)
        kwargs["headers"]["Content-Type"] = "application/octet-stream"
    return kwargs


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.name)
def test_every_operation_routes_to_its_conventional_handler(
    client: TestClient, operation: Any
) -> None:
    response = client.request(**_example_request(operation))
    assert response.status_code == _success(operation.operation_id)[0], response.text
    controller = operation.op["x-openapi-router-controller"]
    assert response.headers["X-Handler"] == f"{controller}.{snake_case(operation.operation_id)}"


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    return body


def test_missing_credentials_get_401(client: TestClient) -> None:
    _assert_problem(client.get("/v1/models"), 401)


def test_unknown_token_gets_401(client: TestClient) -> None:
    _assert_problem(client.get("/v1/models", headers={"Authorization": "Bearer nope"}), 401)


def test_token_without_the_scope_gets_403(client: TestClient) -> None:
    headers = {"Authorization": "Bearer reader"}
    assert client.get("/v1/models", headers=headers).status_code == 200
    body = {"model_id": "mdl_01hv3k8q2m9x7w4c5t6y8z0a1b", "qtype": "tq2_0"}
    _assert_problem(client.post("/v1/quantize", json=body, headers=headers), 403)


def test_api_key_header_is_accepted(client: TestClient) -> None:
    response = client.get("/v1/models", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    assert response.headers["X-User"] == "usr_apikey"
    _assert_problem(client.get("/v1/models", headers={"X-API-Key": "wrong"}), 401)


@pytest.mark.parametrize(
    "change",
    [{"temperature": 5}, {"top_k": -1}, {"surprise": True}, {"stop": ["x"] * 9}],
    ids=["above-maximum", "below-minimum", "unknown-property", "too-many-items"],
)
def test_schema_violations_get_400(client: TestClient, change: dict[str, Any]) -> None:
    body = {"model": "mdl_01hv3k8q2m9x7w4c5t6y8z0a1b", "prompt": "Hi", **change}
    response = client.post(
        "/v1/inference", json=body, headers={"Authorization": "Bearer all-scopes"}
    )
    _assert_problem(response, 400)


def test_malformed_path_id_gets_400(client: TestClient) -> None:
    response = client.get("/v1/models/not-an-id", headers={"Authorization": "Bearer all-scopes"})
    _assert_problem(response, 400)


def test_unknown_query_parameter_gets_400(client: TestClient) -> None:
    assert client.get("/v1/health").status_code == 200
    _assert_problem(client.get("/v1/health", params={"verbose": "1"}), 400)


def test_wrong_content_type_gets_415(client: TestClient) -> None:
    response = client.post(
        "/v1/inference",
        content=b"prompt=hi",
        headers={"Authorization": "Bearer all-scopes", "Content-Type": "text/plain"},
    )
    _assert_problem(response, 415)


# Connexion's multipart validator parses the form a second time and never closes that copy's
# temporary files (spec-first/connexion#1848, open); the handler closes its own.
@pytest.mark.filterwarnings("ignore:Exception ignored in. <function SpooledTemporaryFile.__del__")
def test_model_can_be_created_by_multipart_upload(client: TestClient) -> None:
    response = client.post(
        "/v1/models",
        files={"file": ("tiny.gguf", b"GGUF" + bytes(28), "application/octet-stream")},
        data={"name": "tiny", "public": "true"},
        headers={"Authorization": "Bearer all-scopes"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["X-Handler"] == "bitnet_sdk.api.models.create_model"


def test_raw_upload_is_passed_through_with_or_without_content_length(client: TestClient) -> None:
    url = "/v1/models/mdl_01hv3k8q2m9x7w4c5t6y8z0a1b/file"
    headers = {"Authorization": "Bearer all-scopes", "Content-Type": "application/octet-stream"}
    response = client.put(url, content=bytes(1000), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["X-Body-Bytes"] == "1000"
    chunked = client.put(url, content=iter([bytes(10), bytes(10)]), headers=headers)
    assert chunked.status_code == 200, chunked.text
    assert chunked.headers["X-Body-Bytes"] == "20"


def test_login_takes_json_only(client: TestClient) -> None:
    """One body type: client generators handle an operation with two badly."""
    response = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "pw"})
    assert response.status_code == 200, response.text
    assert response.headers["X-Handler"] == "bitnet_sdk.api.auth.login"
    form = {"grant_type": "password", "username": "ada@example.com", "password": "pw"}
    _assert_problem(client.post("/v1/auth/login", data=form), 415)


