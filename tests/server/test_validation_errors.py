"""One problem shape for every validation failure, on a live server: path, query, header and
body inputs each named in ``errors[]`` with the rule broken, in words, never a schema dump;
and every ``errors[]`` conforms to the spec's ``FieldError``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Account
from tests.support.inference import schema_errors

CASES = [
    # (method, path, request options, expected (field, location, rule, message) entries)
    ("GET", "/v1/models?limit=1000", {},
     [("limit", "query", "maximum", "must be at most 100")]),
    ("GET", "/v1/models?limit=abc&colour=red", {},
     [("colour", "query", "unknown", "is not a parameter of this operation"),
      ("limit", "query", "type", "must be an integer")]),
    ("GET", "/v1/models/not-a-model-id", {},
     [("model_id", "path", "pattern", "must match the pattern ^mdl_[0-9a-z]{10,40}$")]),
    ("PUT", "/v1/models/mdl_0123456789ab/file",
     {"content": b"x", "headers": {"Content-Type": "application/octet-stream",
                                   "X-Content-SHA256": "f" * 63 + "G"}},
     [("X-Content-SHA256", "header", "pattern", "must match the pattern ^[0-9a-f]{64}$")]),
    ("POST", "/v1/inference", {"json": {"prompt": 3, "max_tokens": 0, "colour": "red"}},
     [("colour", "body", "additionalProperties", "is not a known field here"),
      ("max_tokens", "body", "minimum", "must be at least 1"),
      ("model", "body", "required", "is required"),
      ("prompt", "body", "type", "must be a string")]),
    ("POST", "/v1/inference", {"content": b"{not json",
                               "headers": {"Content-Type": "application/json"}},
     [("body", "body", "json", None)]),
]


@pytest.mark.parametrize(("method", "path", "options", "expected"), CASES,
                         ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_validation_errors_name_each_input_and_rule(live_server: Any, customer: Account,
                                                    method: str, path: str,
                                                    options: dict[str, Any],
                                                    expected: list[tuple[str, ...]]) -> None:
    headers = {**customer.headers, **options.get("headers", {})}
    r = httpx.request(method, live_server.url + path, headers=headers,
                      **{k: v for k, v in options.items() if k != "headers"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "urn:bitnet:problem:validation"
    assert "Failed validating" not in r.text and "in schema" not in r.text
    got = {(e["field"], e["location"], e["rule"]): e["message"] for e in problem["errors"]}
    for field, location, rule, message in expected:
        assert (field, location, rule) in got, problem["errors"]
        if message is not None:
            assert got[(field, location, rule)] == message
    for entry in problem["errors"]:
        assert schema_errors("FieldError", entry) == []
        assert entry["field"] in problem["detail"]
    assert schema_errors("Problem", problem) == []


def test_every_400_carries_errors(live_server: Any, customer: Account) -> None:
    """A 400 Connexion raises itself (an empty required body) still lists what was wrong."""
    r = httpx.post(live_server.url + "/v1/inference", content=b"",
                   headers={**customer.headers, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "body"
