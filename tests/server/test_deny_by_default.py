"""Deny by default: every operation of the spec but a few public ones needs a valid credential.

Walks EVERY operation (so a new one is covered the day it is added) against the
live server: without credentials, and with credentials that are not valid,
each must answer ``401`` problem+json before doing anything. The public set is
pinned here: health, version, login, refresh and sign-up, plus the docs and
the spec document, which are not operations.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from bitnet_sdk.server.spec import iter_operations, load_spec

PROBLEM = "application/problem+json"
SPEC = load_spec()
OPERATIONS = list(iter_operations(SPEC))
PUBLIC = {"getHealth", "getVersion", "login", "refreshToken", "signUp"}
BAD_CREDENTIALS = [
    {},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Bearer bn_aaaaaaaaaaaaaaaa_forged-secret"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer"},
    {"X-API-Key": "bn_aaaaaaaaaaaaaaaa_forged-secret"},
    {"X-API-Key": ""},
]


def _unsecured(op: dict[str, Any]) -> bool:
    return op.get("security", SPEC.get("security")) == []


def _path_example(path: str) -> str:
    """The path with each parameter replaced by a well-formed id (so routing matches)."""
    return re.sub(r"\{(\w+)\}", lambda m: {"model_id": "mdl_01hv3k8q2m9x7w4c5t6y8z0a1b",
                                          "job_id": "job_01hv3q5r6s7t8v9w0x1y2z3a4b",
                                          "key_id": "key_01hv3c4d5e6f7g8h9j0k1m2n3p",
                                          "user_id": "usr_01hv3a1b2c3d4e5f6g7h8j9k0m",
                                          "request_id": "upg_01hv3t8v9w0x1y2z3a4b5c6d7e"}[m[1]],
                  path)


def test_public_operations_are_exactly_the_expected_ones():
    assert {op["operationId"] for _, _, op in OPERATIONS if _unsecured(op)} == PUBLIC


@pytest.fixture
def client(live_server):
    """One keep-alive connection for the many requests (and no close racing a response)."""
    with httpx.Client(base_url=live_server.url + "/v1") as client:
        yield client


def test_every_secured_operation_answers_401_without_a_valid_credential(client):
    secured = [(p, m, op) for p, m, op in OPERATIONS if not _unsecured(op)]
    assert len(secured) == len(OPERATIONS) - len(PUBLIC)
    for path, method, op in secured:
        for headers in BAD_CREDENTIALS:
            r = client.request(method, _path_example(path), headers=headers)
            assert r.status_code == 401, (op["operationId"], headers, r.status_code, r.text)
            assert r.headers["content-type"] == PROBLEM, op["operationId"]
            body = r.json()
            assert body["status"] == 401 and body["title"], op["operationId"]
            assert "ratelimit" not in r.headers  # nothing counted for nobody


def test_public_operations_answer_without_credentials(client):
    for path, method, op in OPERATIONS:
        if op["operationId"] in PUBLIC:
            r = client.request(method, path)
            assert r.status_code not in (401, 403), (op["operationId"], r.text)
    # The docs and /openapi.json are public too: tests/server/test_system.py fetches them.


def test_metrics_need_the_metrics_scope(client, customer, admin):
    r = client.get("/metrics", headers=customer.headers)
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert client.get("/metrics", headers=admin.headers).status_code == 200
