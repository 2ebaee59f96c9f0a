"""Validation errors never repeat what the client sent.

Attack (or accident): a 10 kB password, or a secret pasted into the wrong field, a wrong
type or as a made-up field or query parameter name. jsonschema's messages quote the value
("'sk-…' is not of type 'number'"), and the answer's ``detail`` and ``errors[]`` end up in
client logs, our logs (every problem is logged) and error trackers. Neither the answer nor
any log line of the server may contain the value; the answer still names the field and
the rule. Native and OpenAI-compatible APIs, through the live server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Account

SECRET = "sk-" + "Q7" * 24
LONG_PASSWORD = "correct-horse-" + "x" * 10_000


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything the server logs (the test's HTTP client logs its own URLs: left out)."""
    caplog.set_level(logging.DEBUG)
    yield caplog


def _server_lines(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records
                     if not r.name.startswith(("httpx", "httpcore")))


def _native(live_server: Any, customer: Account) -> list[httpx.Response]:
    url, h = live_server.url + "/v1", customer.headers
    return [
        httpx.post(url + "/auth/login", json={"email": "a@example.com", "password": LONG_PASSWORD}),
        httpx.post(url + "/auth/login", json={"email": SECRET, "password": "x"}),
        httpx.post(url + "/auth/login", json={"email": "a@example.com", "password": "x",
                                              SECRET: "x"}),
        httpx.post(url + "/api-keys", headers=h, json={"name": "k", "scopes": [SECRET]}),
        httpx.post(url + "/quantize", headers=h, json={"model_id": SECRET, "qtype": SECRET}),
        httpx.get(url + "/models", headers=h, params={"limit": SECRET, SECRET: "1"}),
    ]


def _openai(live_server: Any, customer: Account) -> list[httpx.Response]:
    url, h = live_server.url + "/openai/v1", customer.headers
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return [
        httpx.post(url + "/chat/completions", headers=h,
                   json={**chat, "messages": [{"role": SECRET, "content": "hi"}]}),
        httpx.post(url + "/chat/completions", headers=h, json={**chat, "temperature": SECRET}),
        httpx.post(url + "/chat/completions", headers=h, json={**chat, SECRET: 1}),
        httpx.post(url + "/completions", headers=h,
                   json={"model": "m", "prompt": "hi", "max_tokens": SECRET}),
    ]


def test_no_rejected_value_is_echoed_in_answers_or_logs(live_server, customer, server_log):
    answers = _native(live_server, customer) + _openai(live_server, customer)
    for r in answers:
        assert r.status_code == 400, r.text
        assert SECRET not in r.text and "x" * 100 not in r.text, r.text
        assert len(r.text) < 2000  # the rule in words, not the value or the schema
    lines = _server_lines(server_log)
    assert lines  # the server did log the refusals
    assert SECRET not in lines and "x" * 100 not in lines


def test_the_answer_still_names_the_field_and_the_rule(live_server, customer):
    r = httpx.post(live_server.url + "/v1/auth/login",
                   json={"email": "a@example.com", "password": LONG_PASSWORD})
    assert r.json()["errors"] == [{"field": "password", "location": "body", "rule": "maxLength",
                                   "message": "must be at most 1024 characters long"}]
    r = httpx.post(live_server.url + "/openai/v1/chat/completions", headers=customer.headers,
                   json={"model": "m", "messages": [{"role": "user", "content": "hi"}],
                         "temperature": SECRET})
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("temperature", "invalid_type"), error
    # A made-up name that looks like a parameter is named; one that does not is not.
    r = httpx.post(live_server.url + "/v1/auth/login",
                   json={"email": "a@example.com", "password": "x", "frobnicate": 1})
    assert r.json()["errors"][0]["field"] == "frobnicate"
