"""A per-account storage quota, enforced on every way a model file arrives.

Attacks on a live server by an account whose tier stores 2.5 model files: a third file by
multipart, by raw PUT with and without ``Content-Length``, many uploads at once (SQLite and
PostgreSQL), and a quantization of someone else's public model whose output would not fit.
Every refusal is ``413`` problem+json ``storage-quota-exceeded``; deleting a model makes room;
``GET /account/limits`` shows the quota.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from bitnet_sdk.server.app import create_app
from bitnet_sdk.server.asgi.testing import ServerThread
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database_url,
)
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account, make_account
from tests.support.jobs import register_source

PROBLEM = "application/problem+json"
OCTETS = {"Content-Type": "application/octet-stream"}


@dataclass
class Setup:
    url: str
    settings: Settings
    gguf: bytes

    @property
    def limit(self) -> int:
        return self.settings.tiers["disk"].storage_bytes


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("storage-models")
    return {"ternary": build_model(folder / "m.gguf"),
            "float": build_model(folder / "f32.gguf", qtype="f32", n_layers=1)}


@pytest.fixture(params=DATABASE_KINDS)
def setup(request: pytest.FixtureRequest, tmp_path: Path, files) -> Iterator[Setup]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    gguf = files["ternary"].read_bytes()
    tiers = {**DEFAULT_TIERS, "disk": TierLimits(10_000, 50, 1_000_000, 100_000,
                                                 storage_bytes=len(gguf) * 5 // 2)}
    with temporary_database_url(request.param, tmp_path) as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url, demo_model=False,
                            tiers=tiers)
        with ServerThread(create_app(settings)) as thread:
            yield Setup(thread.url, settings, gguf)


def _multipart(setup: Setup, who: Account, name: str) -> httpx.Response:
    return httpx.post(setup.url + "/v1/models", headers=who.headers, data={"name": name},
                      files={"file": ("m.gguf", setup.gguf, "application/octet-stream")},
                      timeout=60)


def _refused(r: httpx.Response, setup: Setup) -> dict:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"] == "urn:bitnet:problem:storage-quota-exceeded"
    assert (body["quota"], body["limit"]) == ("storage_bytes", setup.limit)
    return body


def _storage(setup: Setup, who: Account) -> dict:
    limits = httpx.get(setup.url + "/v1/account/limits", headers=who.headers).json()
    return next(q for q in limits["quotas"] if q["name"] == "storage_bytes")


def test_every_upload_path_stops_at_the_quota(setup):
    who = make_account(setup.settings, "disk@example.com", tier="disk")
    first = _multipart(setup, who, "one")
    assert first.status_code == 201, first.text
    assert _multipart(setup, who, "two").status_code == 201
    size = len(setup.gguf)
    assert _refused(_multipart(setup, who, "three"), setup)["used"] == 2 * size

    empty = httpx.post(setup.url + "/v1/models", json={"name": "raw"}, headers=who.headers)
    assert empty.status_code == 201  # a record without a file takes no room
    put = setup.url + f"/v1/models/{empty.json()['id']}/file"
    _refused(httpx.put(put, content=setup.gguf, headers={**who.headers, **OCTETS}), setup)

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused once past what is left
        for start in range(0, size, 65536):
            yield setup.gguf[start:start + 65536]

    _refused(httpx.put(put, content=chunks(), headers={**who.headers, **OCTETS}), setup)
    quota = _storage(setup, who)
    assert (quota["used"], quota["limit"], quota["period"]) == (2 * size, setup.limit, "none")

    gone = httpx.delete(setup.url + f"/v1/models/{first.json()['id']}", headers=who.headers)
    assert gone.status_code == 204
    r = httpx.put(put, content=setup.gguf, headers={**who.headers, **OCTETS}, timeout=60)
    assert r.status_code == 200, r.text
    assert _storage(setup, who)["used"] == 2 * size


def test_concurrent_uploads_cannot_overshoot(setup):
    who = make_account(setup.settings, "rush@example.com", tier="disk")
    start = threading.Barrier(8)

    def upload(n: int) -> int:
        start.wait()
        return _multipart(setup, who, f"rush-{n}").status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(upload, range(8)))
    assert sorted(statuses) == [201, 201] + [413] * 6
    assert _storage(setup, who)["used"] == 2 * len(setup.gguf)


def test_a_quantization_output_that_does_not_fit_is_refused(setup, files):
    publisher = make_account(setup.settings, "pub@example.com", tier="enterprise")
    public = register_source(setup.settings, files["float"], publisher.user_id, "open-f32",
                             public=True)
    who = make_account(setup.settings, "full@example.com", tier="disk")
    assert _multipart(setup, who, "one").status_code == 201
    assert _multipart(setup, who, "two").status_code == 201
    r = httpx.post(setup.url + "/v1/quantize", headers=who.headers, timeout=120,
                   json={"model_id": public, "qtype": "tq2_0", "mode": "sync"})
    body = _refused(r, setup)
    assert body["job_id"].startswith("job_")
    names = [m["name"] for m in httpx.get(setup.url + "/v1/models?limit=100",
                                          headers=who.headers).json()["data"]
             if m["owner_id"] == who.user_id]
    assert sorted(names) == ["one", "two"]
