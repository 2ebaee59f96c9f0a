"""Model files over HTTP on a live server: raw and multipart uploads, downloads, ranges, limits,
failures that leave nothing behind, and recovery at start-up."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.service.registry.uploads import PARTIAL_SUFFIX
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account, make_account

PROBLEM = "application/problem+json"
#: Small enough to exceed cheaply, large enough for the synthetic model (~0.6 MB).
LIMIT = 2 * 1024**2
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", demo_model=False, max_upload_bytes=LIMIT)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_model(tmp_path_factory.mktemp("gguf") / "m.gguf", seed=11).read_bytes()


@pytest.fixture
def api(live_server) -> str:
    return live_server.url + "/v1"


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    return r.json()


def _record(api: str, who: Account, name: str = "m", **fields: object) -> str:
    r = httpx.post(api + "/models", json={"name": name, **fields}, headers=who.headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _put(api: str, who: Account, model_id: str, content: object, **headers: str) -> httpx.Response:
    return httpx.put(api + f"/models/{model_id}/file", content=content,
                     headers={**who.headers, **OCTETS, **headers})


def _model(api: str, who: Account, model_id: str) -> dict:
    return httpx.get(api + f"/models/{model_id}", headers=who.headers).json()


def _leftovers(settings: Settings) -> list[Path]:
    return sorted(settings.uploads_dir.glob("*"))


def test_upload_then_download_byte_for_byte(api: str, customer: Account, settings: Settings,
                                             gguf: bytes) -> None:
    model_id = _record(api, customer, "tiny")
    digest = hashlib.sha256(gguf).hexdigest()
    r = _put(api, customer, model_id, gguf, **{"X-Content-SHA256": digest})
    assert r.status_code == 200, r.text
    model = r.json()
    assert (model["status"], model["size_bytes"], model["sha256"]) == ("ready", len(gguf), digest)
    assert (model["kind"], model["format"], model["qtype"]) == ("llm", "gguf", "tq2_0")
    assert _leftovers(settings) == []

    r = httpx.get(api + f"/models/{model_id}/file", headers=customer.headers)
    assert r.status_code == 200
    assert r.content == gguf
    assert r.headers["content-length"] == str(len(gguf))
    assert r.headers["etag"] == f'"{digest}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-disposition"] == 'attachment; filename="tiny.gguf"'

    meta = httpx.get(api + f"/models/{model_id}/metadata", headers=customer.headers).json()
    assert meta["model_id"] == model_id and meta["architecture"] == "bitnet"
    assert {q["qtype"] for q in meta["qtypes"]} >= {"tq2_0"}
    assert meta["memory"]["weights_bytes"] > 0 and meta["tokenizer"]["type"] == "bpe"
    report = httpx.get(api + f"/models/{model_id}/validation", headers=customer.headers).json()
    assert (report["model_id"], report["ok"], report["problems"]) == (model_id, True, [])
    _problem(_put(api, customer, model_id, gguf), 409)  # ready: no second file


def test_chunked_upload(api: str, customer: Account, gguf: bytes) -> None:
    model_id = _record(api, customer)
    chunks = iter([gguf[:1000], gguf[1000:300_000], gguf[300_000:]])
    r = _put(api, customer, model_id, chunks)
    assert r.status_code == 200, r.text
    assert httpx.get(api + f"/models/{model_id}/file", headers=customer.headers).content == gguf


@pytest.mark.parametrize(("header", "status", "piece"), [
    ("bytes=10-19", 206, slice(10, 20)),
    ("bytes=0-0", 206, slice(0, 1)),
    ("bytes=-7", 206, slice(-7, None)),
    ("bytes=590000-", 206, slice(590000, None)),
    ("bytes=100-999999999", 206, slice(100, None)),
    ("bytes=20-10", 200, slice(None)),  # malformed: ignored
    ("items=0-5", 200, slice(None)),
])
def test_ranges(api: str, customer: Account, gguf: bytes, header: str, status: int,
                piece: slice) -> None:
    model_id = _record(api, customer)
    assert _put(api, customer, model_id, gguf).status_code == 200
    r = httpx.get(api + f"/models/{model_id}/file", headers={**customer.headers, "Range": header})
    assert r.status_code == status, r.text
    assert r.content == gguf[piece]
    assert r.headers["content-length"] == str(len(gguf[piece]))
    if status == 206:
        start = len(gguf) - len(gguf[piece]) if piece.start and piece.start < 0 else piece.start
        end = start + len(gguf[piece]) - 1
        assert r.headers["content-range"] == f"bytes {start}-{end}/{len(gguf)}"


def test_unsatisfiable_and_stale_ranges(api: str, customer: Account, gguf: bytes) -> None:
    model_id = _record(api, customer)
    etag = _put(api, customer, model_id, gguf).json()["sha256"]
    url = api + f"/models/{model_id}/file"
    for header in (f"bytes={len(gguf)}-", "bytes=-0"):
        r = httpx.get(url, headers={**customer.headers, "Range": header})
        _problem(r, 416)
        assert r.headers["content-range"] == f"bytes */{len(gguf)}"
    stale = httpx.get(url, headers={**customer.headers, "Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200 and stale.content == gguf
    fresh = httpx.get(url, headers={**customer.headers, "Range": "bytes=0-9",
                                    "If-Range": f'"{etag}"'})
    assert fresh.status_code == 206 and fresh.content == gguf[:10]


def test_oversize_upload_is_refused_and_leaves_nothing(api: str, customer: Account,
                                                       settings: Settings) -> None:
    model_id = _record(api, customer)
    body = _problem(_put(api, customer, model_id, bytes(LIMIT + 1)), 413)
    assert body["limit_bytes"] == LIMIT
    # Without Content-Length the limit applies as the body streams in.
    _problem(_put(api, customer, model_id, iter([bytes(LIMIT // 2)] * 3)), 413)
    assert _leftovers(settings) == []
    assert _model(api, customer, model_id)["status"] == "pending_upload"


def test_digest_mismatch_is_refused(api: str, customer: Account, settings: Settings,
                                    gguf: bytes) -> None:
    model_id = _record(api, customer)
    body = _problem(_put(api, customer, model_id, gguf, **{"X-Content-SHA256": "0" * 64}), 422)
    assert body["errors"][0]["field"] == "X-Content-SHA256"
    assert _leftovers(settings) == [] and not any(settings.models_dir.iterdir())
    assert _model(api, customer, model_id)["status"] == "pending_upload"


def test_invalid_file_is_reported_and_can_be_replaced(api: str, customer: Account,
                                                      settings: Settings, gguf: bytes) -> None:
    model_id = _record(api, customer)
    body = _problem(_put(api, customer, model_id, gguf[: len(gguf) // 2]), 422)
    codes = {p["code"] for p in body["problems"]}
    assert codes and all(p["severity"] == "error" for p in body["problems"])
    assert body["errors"] and body["errors"][0]["field"] == "file"
    assert _model(api, customer, model_id)["status"] == "invalid"
    report = httpx.get(api + f"/models/{model_id}/validation", headers=customer.headers).json()
    assert report["ok"] is False and {p["code"] for p in report["problems"]} == codes
    for path in ("metadata", "file"):
        _problem(httpx.get(api + f"/models/{model_id}/{path}", headers=customer.headers), 409)
    assert _leftovers(settings) == [] and not any(settings.models_dir.iterdir())
    assert _put(api, customer, model_id, gguf).json()["status"] == "ready"


def test_upload_needs_owner_and_octet_stream(api: str, customer: Account, gguf: bytes,
                                             live_server) -> None:
    other = make_account(live_server.settings, "other@example.com")
    private = _record(api, customer, "private")
    shared = _record(api, customer, "shared", public=True)
    _problem(_put(api, other, private, gguf), 404)
    _problem(_put(api, other, shared, gguf), 403)
    _problem(httpx.put(api + f"/models/{private}/file", content=gguf,
                       headers={**customer.headers, "Content-Type": "application/json"}), 415)
    _problem(_put(api, customer, private, gguf, **{"X-Content-SHA256": "xyz"}), 400)
    assert _model(api, customer, private)["status"] == "pending_upload"


def test_multipart_create(api: str, customer: Account, settings: Settings, gguf: bytes) -> None:
    r = httpx.post(api + "/models", headers=customer.headers,
                   files={"file": ("m.gguf", gguf, "application/octet-stream")},
                   data={"name": "small", "description": "one request", "public": "true"})
    assert r.status_code == 201, r.text
    model = r.json()
    assert (model["status"], model["public"], model["size_bytes"]) == ("ready", True, len(gguf))
    download = httpx.get(api + f"/models/{model['id']}/file", headers=customer.headers)
    assert download.content == gguf

    bad = httpx.post(api + "/models", headers=customer.headers,
                     files={"file": ("bad.gguf", b"GGUF" + bytes(60), "application/octet-stream")},
                     data={"name": "bad"})
    assert _problem(bad, 422)["problems"]
    names = [m["name"] for m in httpx.get(api + "/models", headers=customer.headers).json()["data"]]
    assert names == ["small"]  # a refused file leaves no record
    assert _leftovers(settings) == []


def test_multipart_over_the_limit(api: str, customer: Account, settings: Settings) -> None:
    big = {"file": ("big.gguf", bytes(LIMIT + 10), "application/octet-stream")}
    r = httpx.post(api + "/models", headers=customer.headers, files=big, data={"name": "big"})
    assert "PUT /v1/models/{model_id}/file" in _problem(r, 413)["detail"]
    assert httpx.get(api + "/models", headers=customer.headers).json()["data"] == []
    assert _leftovers(settings) == []


def _wait_until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


def test_interrupted_upload_leaves_nothing_and_can_be_retried(
    api: str, live_server, customer: Account, settings: Settings, gguf: bytes
) -> None:
    model_id = _record(api, customer)
    host, port = live_server.url.removeprefix("http://").split(":")
    head = (f"PUT /v1/models/{model_id}/file HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {customer.token}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(gguf)}\r\n\r\n")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + gguf[: len(gguf) // 3])
        _wait_until(lambda: any(settings.uploads_dir.glob(f"*{PARTIAL_SUFFIX}")), "partial file")
    _wait_until(lambda: not _leftovers(settings), "partial removed after the disconnect")
    assert _model(api, customer, model_id)["status"] == "pending_upload"
    assert _put(api, customer, model_id, gguf).json()["status"] == "ready"


@pytest.fixture
def restarted(settings: Settings) -> Iterator[str]:
    """A server started over a data dir that a crash left with a partial upload."""
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread

    settings.uploads_dir.mkdir(parents=True)
    (settings.uploads_dir / f"crashed{PARTIAL_SUFFIX}").write_bytes(b"half a model")
    with ServerThread(create_app(settings)) as server:
        yield server.url


def test_start_up_removes_abandoned_partials(restarted: str, settings: Settings) -> None:
    assert httpx.get(restarted + "/v1/health").status_code == 200
    assert _leftovers(settings) == []
