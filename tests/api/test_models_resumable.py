"""Resumable model uploads on a live server: ``Content-Range`` pieces, the held offset after a
broken connection, refusals of pieces that do not continue the upload, and the checks of a
whole-file upload (size limit, storage quota, digest, validation) kept at the last piece."""

from __future__ import annotations

import hashlib
import socket
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account

PROBLEM = "application/problem+json"
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


def _record(api: str, who: Account, name: str = "m") -> str:
    r = httpx.post(api + "/models", json={"name": name}, headers=who.headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _piece(api: str, who: Account, model_id: str, data: bytes, first: int, total: int,
           **headers: str) -> httpx.Response:
    last = first + len(data) - 1
    return httpx.put(api + f"/models/{model_id}/upload", content=data, timeout=60, headers={
        **who.headers, **OCTETS, "Content-Range": f"bytes {first}-{last}/{total}", **headers})


def _held(api: str, who: Account, model_id: str) -> dict:
    r = httpx.get(api + f"/models/{model_id}/upload", headers=who.headers)
    assert r.status_code == 200, r.text
    assert r.headers["upload-offset"] == str(r.json()["offset"])
    return r.json()


def _problem(r: httpx.Response, status: int, slug: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"] == f"urn:bitnet:problem:{slug}", body
    return body


def _resumable_files(settings: Settings) -> list[Path]:
    return sorted((settings.uploads_dir / "resumable").glob("*"))


def test_upload_in_pieces_reports_each_offset_and_publishes_the_whole_file(
        api: str, customer: Account, settings: Settings, gguf: bytes) -> None:
    model_id = _record(api, customer)
    assert _held(api, customer, model_id) == {"model_id": model_id, "offset": 0, "complete": False}
    total, cut1, cut2 = len(gguf), len(gguf) // 3, 2 * len(gguf) // 3
    r = _piece(api, customer, model_id, gguf[:cut1], 0, total)
    assert r.status_code == 200, r.text
    assert r.json() == {"model_id": model_id, "offset": cut1, "total_bytes": total, "complete": False}
    assert r.headers["upload-offset"] == str(cut1)
    assert _held(api, customer, model_id) == {"model_id": model_id, "offset": cut1,
                                              "total_bytes": total, "complete": False}
    assert _piece(api, customer, model_id, gguf[cut1:cut2], cut1, total).json()["offset"] == cut2
    digest = hashlib.sha256(gguf).hexdigest()
    r = _piece(api, customer, model_id, gguf[cut2:], cut2, total,
               **{"X-Content-SHA256": digest})
    assert r.status_code == 200, r.text
    assert (r.json()["offset"], r.json()["complete"]) == (total, True)
    model = r.json()["model"]
    assert (model["status"], model["size_bytes"], model["sha256"]) == ("ready", total, digest)
    assert httpx.get(api + f"/models/{model_id}/file", headers=customer.headers).content == gguf
    assert _resumable_files(settings) == []
    assert sorted(settings.uploads_dir.glob("*.partial")) == []
    # Ready: nothing to resume any more.
    r = httpx.get(api + f"/models/{model_id}/upload", headers=customer.headers)
    assert r.status_code == 409


def _send_part_then_hang_up(url: str, path: str, headers: dict[str, str], data: bytes) -> None:
    """Announce a piece and send only ``data`` of it, then close the connection."""
    parts = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n".encode() + data)


def _wait_for_offset(api: str, who: Account, model_id: str, offset: int) -> dict:
    """The held state once the server has finished the broken piece (bounded wait)."""
    deadline = time.monotonic() + 60
    while True:
        held = _held(api, who, model_id)
        if held["offset"] >= offset or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


def test_a_broken_connection_keeps_the_bytes_and_the_upload_resumes_from_them(
        api: str, live_server, customer: Account, settings: Settings, gguf: bytes) -> None:
    model_id = _record(api, customer)
    total, sent = len(gguf), len(gguf) * 3 // 5
    _send_part_then_hang_up(live_server.url, f"/v1/models/{model_id}/upload", {
        **customer.headers, **OCTETS, "Content-Length": str(total),
        "Content-Range": f"bytes 0-{total - 1}/{total}"}, gguf[:sent])
    held = _wait_for_offset(api, customer, model_id, sent)
    assert held == {"model_id": model_id, "offset": sent, "total_bytes": total, "complete": False}
    assert _resumable_files(settings)[0].read_bytes() == gguf[:sent]

    digest = hashlib.sha256(gguf).hexdigest()
    r = _piece(api, customer, model_id, gguf[sent:], sent, total, **{"X-Content-SHA256": digest})
    assert r.status_code == 200, r.text
    assert r.json()["model"]["sha256"] == digest
    assert httpx.get(api + f"/models/{model_id}/file", headers=customer.headers).content == gguf
    assert _resumable_files(settings) == []


def test_a_piece_that_does_not_continue_the_upload_is_refused_with_the_offset(
        api: str, customer: Account, gguf: bytes) -> None:
    model_id = _record(api, customer)
    total = len(gguf)
    body = _problem(_piece(api, customer, model_id, gguf[10:20], 10, total), 409,
                    "upload-offset-mismatch")
    assert body["offset"] == 0 and "total_bytes" not in body
    assert _piece(api, customer, model_id, gguf[:1000], 0, total).status_code == 200

    r = _piece(api, customer, model_id, gguf[500:1500], 500, total)
    body = _problem(r, 409, "upload-offset-mismatch")
    assert (body["offset"], body["total_bytes"]) == (1000, total)
    assert r.headers["upload-offset"] == "1000"
    assert "holds 1000 bytes" in body["detail"]
    body = _problem(_piece(api, customer, model_id, gguf[1000:2000], 1000, total + 1), 409,
                    "upload-offset-mismatch")
    assert body["offset"] == 1000
    # Nothing of the refused pieces was kept: the upload still continues from 1000.
    assert _held(api, customer, model_id)["offset"] == 1000
    assert _piece(api, customer, model_id, gguf[1000:], 1000, total).json()["complete"] is True


def test_a_piece_from_zero_starts_over(api: str, customer: Account, gguf: bytes) -> None:
    model_id = _record(api, customer)
    assert _piece(api, customer, model_id, b"x" * 5000, 0, 9000).status_code == 200
    assert _piece(api, customer, model_id, gguf[:100], 0, len(gguf)).json()["offset"] == 100
    assert _piece(api, customer, model_id, gguf[100:], 100, len(gguf)).json()["complete"] is True


@pytest.mark.parametrize("header", ["bytes 0-9", "bytes=0-9/10", "bytes 5-4/10", "bytes 0-10/10",
                                    "bytes */10"])
def test_a_malformed_content_range_is_a_bad_request(api: str, customer: Account,
                                                    header: str) -> None:
    model_id = _record(api, customer)
    r = httpx.put(api + f"/models/{model_id}/upload", content=b"0123456789",
                  headers={**customer.headers, **OCTETS, "Content-Range": header})
    assert r.status_code == 400, r.text
    assert any(e["field"] == "Content-Range" for e in r.json()["errors"])


def test_content_length_must_match_the_range(api: str, customer: Account) -> None:
    model_id = _record(api, customer)
    r = _piece(api, customer, model_id, b"0123456789", 0, 100,
               **{"Content-Range": "bytes 0-19/100"})
    body = _problem(r, 400, "bad-request")
    assert "Content-Length 10" in body["detail"]


def test_a_body_longer_than_its_range_is_refused_and_the_range_kept(
        api: str, customer: Account) -> None:
    model_id = _record(api, customer)

    def body():
        yield b"a" * 10
        yield b"b" * 10

    r = httpx.put(api + f"/models/{model_id}/upload", content=body(), headers={
        **customer.headers, **OCTETS, "Content-Range": "bytes 0-14/100"})
    assert r.status_code == 400, r.text
    assert _held(api, customer, model_id)["offset"] == 15


def test_total_over_the_size_limit_or_quota_is_refused_before_any_byte(
        api: str, live_server, customer: Account, settings: Settings) -> None:
    model_id = _record(api, customer)
    body = _problem(_piece(api, customer, model_id, b"x" * 10, 0, LIMIT + 1), 413,
                    "payload-too-large")
    assert body["limit_bytes"] == LIMIT
    assert _resumable_files(settings) == []


def test_storage_quota_is_checked_with_the_announced_total(tmp_path: Path) -> None:
    from bitnet_sdk.config import DEFAULT_TIERS
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from tests.conftest import make_account

    tiers = {name: replace(limits, storage_bytes=1000) for name, limits in DEFAULT_TIERS.items()}
    settings = Settings(data_dir=tmp_path / "data", demo_model=False, tiers=tiers)
    with ServerThread(create_app(settings)) as server:
        who = make_account(settings, "q@example.com")
        api = server.url + "/v1"
        model_id = _record(api, who)
        body = _problem(_piece(api, who, model_id, b"x" * 10, 0, 5000), 413,
                        "storage-quota-exceeded")
        assert body["detail"]


def test_a_wrong_digest_drops_the_upload(api: str, customer: Account, settings: Settings,
                                         gguf: bytes) -> None:
    model_id = _record(api, customer)
    total = len(gguf)
    assert _piece(api, customer, model_id, gguf[:100], 0, total).status_code == 200
    r = _piece(api, customer, model_id, gguf[100:], 100, total,
               **{"X-Content-SHA256": "0" * 64})
    _problem(r, 422, "digest-mismatch")
    assert _held(api, customer, model_id) == {"model_id": model_id, "offset": 0, "complete": False}
    assert _resumable_files(settings) == []
    assert sorted(settings.uploads_dir.glob("*.partial")) == []


def test_an_invalid_file_makes_the_model_invalid_and_a_new_upload_may_follow(
        api: str, customer: Account, gguf: bytes) -> None:
    model_id = _record(api, customer)
    junk = b"GGUF" + b"\0" * 996
    assert _piece(api, customer, model_id, junk[:500], 0, 1000).status_code == 200
    r = _piece(api, customer, model_id, junk[500:], 500, 1000)
    assert r.status_code == 422, r.text
    status = httpx.get(api + f"/models/{model_id}", headers=customer.headers).json()["status"]
    assert status == "invalid"
    assert _piece(api, customer, model_id, gguf, 0, len(gguf)).json()["complete"] is True


def test_deleting_the_model_drops_its_upload(api: str, customer: Account,
                                             settings: Settings, gguf: bytes) -> None:
    model_id = _record(api, customer)
    assert _piece(api, customer, model_id, gguf[:100], 0, len(gguf)).status_code == 200
    assert len(_resumable_files(settings)) == 1
    assert httpx.delete(api + f"/models/{model_id}", headers=customer.headers).status_code == 204
    assert _resumable_files(settings) == []


def test_another_user_cannot_see_or_continue_the_upload(api: str, live_server, customer: Account,
                                                        gguf: bytes) -> None:
    from tests.conftest import make_account

    other = make_account(live_server.settings, "other@example.com")
    model_id = _record(api, customer)
    assert _piece(api, customer, model_id, gguf[:100], 0, len(gguf)).status_code == 200
    r = httpx.get(api + f"/models/{model_id}/upload", headers=other.headers)
    assert r.status_code == 404
    assert _piece(api, other, model_id, gguf[100:], 100, len(gguf)).status_code == 404
