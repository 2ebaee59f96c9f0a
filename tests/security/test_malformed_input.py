"""Malformed input through the live server: every one a 4xx problem naming the fault, never a 500.

Attacks: JSON nested past any sane depth, integers past Python's int-conversion limit,
``NaN``/``Infinity`` and overflowing floats, the same over the WebSocket, a multipart
body whose part has no headers, and date-times at the edge of the calendar in usage and API-key
queries (which overflowed when converted to UTC or shifted by the default range).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import Account

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body
    return body


def post_raw(server: Any, path: str, account: Account, raw: str | bytes,
             content_type: str = "application/json") -> httpx.Response:
    return httpx.post(server.url + path, content=raw, timeout=30,
                      headers={**account.headers, "Content-Type": content_type})


# Bodies that used to raise inside the JSON parser (RecursionError, ValueError).
@pytest.mark.parametrize(("raw", "words"), [
    ("[" * 50_000 + "]" * 50_000, ("nested",)),
    ('{"prompt": ' + '{"a": ' * 2_000 + "1" + "}" * 2_001, ("nested",)),
    ('{"model": "m", "prompt": "p", "max_tokens": ' + "9" * 5_000 + "}", ("digits",)),
    ('{"model": "m", "prompt": "p", "temperature": NaN}', ("NaN",)),
    ('{"model": "m", "prompt": "p", "temperature": 1e999}', ("out of range",)),
    ('{"model": "m", "prompt": "p", "max_tokens": -' + "1" * 4_400 + "}", ("digits",)),
])
@pytest.mark.parametrize("path", ["/v1/inference", "/openai/v1/completions"])
def test_hostile_json_bodies_are_400s(live_server: Any, customer: Account, path: str,
                                      raw: str, words: tuple[str, ...]) -> None:
    r = post_raw(live_server, path, customer, raw)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    text = r.text
    assert all(word in text for word in words), text
    # The server is still fine afterwards.
    assert httpx.get(live_server.url + "/v1/health").status_code == 200


def test_hostile_json_on_every_json_operation_is_never_a_500(live_server: Any,
                                                             customer: Account) -> None:
    deep = "[" * 20_000 + "]" * 20_000
    for path in ("/v1/models", "/v1/quantize", "/v1/inference/batch", "/v1/api-keys",
                 "/v1/auth/login", "/v1/account/upgrade", "/openai/v1/chat/completions"):
        r = post_raw(live_server, path, customer, deep)
        assert r.status_code == 400, (path, r.status_code, r.text[:200])


def test_deep_json_within_the_limit_is_still_validated_normally(live_server: Any,
                                                                customer: Account) -> None:
    nested = {"model": "m", "prompt": "p", "stop": [["x"]]}  # schema-invalid, shallow
    r = post_raw(live_server, "/v1/inference", customer, json.dumps(nested))
    assert r.status_code == 400 and "nested" not in r.json()["detail"]


def test_hostile_json_over_the_websocket_closes_1008_not_an_error(live_server: Any,
                                                                  customer: Account) -> None:
    for text in ("[" * 50_000, '{"type": "cancel", "request_id": ' + "7" * 5000 + "}"):
        with connect(live_server.ws_url("/v1/inference/ws"),
                     subprotocols=["bearer", customer.token], max_size=None) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            ws.send(text)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=30)
            assert ws.close_code == 1008


def test_multipart_part_without_headers_is_a_400(live_server: Any, customer: Account) -> None:
    body = (b"--XyZ\r\n\r\nno headers at all\r\n--XyZ--\r\n")
    r = post_raw(live_server, "/v1/models", customer, body, "multipart/form-data; boundary=XyZ")
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize("query", [
    {"to": "0001-01-01T00:00:00Z"},
    {"from": "9999-12-31T00:00:00Z"},
    {"to": "9999-12-31T23:59:59-05:00"},
    {"from": "0001-01-01T00:30:00+01:00", "to": "0001-01-02T00:00:00Z"},
    {"from": "9999-12-30T00:00:00Z", "to": "9999-12-31T23:59:59Z"},
])
def test_usage_at_the_edges_of_the_calendar_is_a_422_naming_the_field(
        live_server: Any, customer: Account, query: dict[str, str]) -> None:
    r = httpx.get(live_server.url + "/v1/account/usage", params=query, headers=customer.headers)
    body = assert_problem(r, 422, "between")
    assert {e["field"] for e in body["errors"]} <= set(query)


def test_api_key_expiry_at_the_edge_of_the_calendar_is_a_422(live_server: Any,
                                                              customer: Account) -> None:
    for when in ("9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59Z"):
        r = httpx.post(live_server.url + "/v1/api-keys", headers=customer.headers,
                       json={"name": "edge", "expires_at": when})
        body = assert_problem(r, 422, "expires_at")
        assert body["errors"][0]["field"] == "expires_at"


def test_usage_inside_the_calendar_still_works(live_server: Any, customer: Account) -> None:
    r = httpx.get(live_server.url + "/v1/account/usage", headers=customer.headers,
                  params={"from": "2024-01-01T00:00:00Z", "to": "2024-02-01T00:00:00+01:00"})
    assert r.status_code == 200, r.text
    assert r.json()["to"].startswith("2024-01-31T23:00:00")


def test_parameter_patterns_end_at_the_end_of_the_value(live_server: Any,
                                                        customer: Account) -> None:
    # JSON Schema patterns are ECMA 262: '$' does not match before a final newline, so the
    # value is refused by validation, before any handler decodes it.
    r = httpx.get(live_server.url + "/v1/models?cursor=abc%0A", headers=customer.headers)
    assert_problem(r, 400, "must match the pattern")
