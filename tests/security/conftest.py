"""Attacks through a live server: a customer's model files and requests (see docs/security.md).

Every test here uploads what an attacker would, through the real upload endpoints, and then
uses it as a customer would; the server runs the numpy backend (deterministic, no JIT).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitnet_sdk.config import Settings
from tests.conftest import Account, make_account
from tests.support.inference import inference_settings

PROBLEM = "application/problem+json"


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return inference_settings(tmp_path, **getattr(request, "param", {}))


@pytest.fixture
def attacker(live_server: Any) -> Account:
    """An ordinary paying customer (enterprise: limits high enough for a fuzz run)."""
    return make_account(live_server.settings, "mallory@example.com", tier="enterprise")


def upload(live_server: Any, who: Account, data: bytes, name: str, *,
           multipart: bool = True, timeout: float = 60) -> httpx.Response:
    """Create a model from ``data``: one multipart POST, or a record then a raw PUT of the file."""
    api = live_server.url + "/v1/models"
    if multipart:
        return httpx.post(api, headers=who.headers, timeout=timeout,
                          files={"file": (f"{name}.gguf", data, "application/octet-stream")},
                          data={"name": name})
    r = httpx.post(api, json={"name": name}, headers=who.headers, timeout=timeout)
    assert r.status_code == 201, r.text
    return httpx.put(f"{api}/{r.json()['id']}/file", content=data, timeout=timeout,
                     headers={**who.headers, "Content-Type": "application/octet-stream"})


def infer(live_server: Any, who: Account, *, timeout: float = 60, **body: Any) -> httpx.Response:
    return httpx.post(live_server.url + "/v1/inference", json=body, headers=who.headers,
                      timeout=timeout)


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json body of ``r``, which must have ``status``."""
    assert r.status_code == status, r.text[:2000]
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    return body


def problem_codes(r: httpx.Response) -> list[str]:
    """Validation problem codes of a refused upload."""
    return [p["code"] for p in problem(r, 422).get("problems", [])]


def rss_bytes() -> int:
    """Resident memory of this process, which is the server's (it runs in a thread here)."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
