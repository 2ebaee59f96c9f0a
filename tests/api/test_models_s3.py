"""Model files in an S3-compatible bucket (a real s3proxy server, ``BITNET_TEST_S3_URL``).

Through a live server: raw and multipart uploads land in the bucket (staged locally,
published at completion), downloads and ranges come back byte for byte, a quota refusal
leaves the bucket empty, and a model whose only copy is the bucket is fetched into the
process's cache and runs. Through the registry: the row follows the object (a failed
insert takes the object back; a failed upload leaves no row), and the cache stays
within its bound.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import peewee
import pytest

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from bitnet_sdk.service.registry import models as registry
from bitnet_sdk.service.registry import storage
from bitnet_sdk.service.registry.uploads import PartialFile
from bitnet_sdk.store import ModelRecord, User
from bitnet_sdk.store.testing import temporary_database
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account, make_account
from tests.support.inference import inference_settings
from tests.support.s3 import S3Bucket, s3_test_bucket

OCTETS = {"Content-Type": "application/octet-stream"}
TIERS = {**DEFAULT_TIERS, "small": TierLimits(1000, 5, 10_000, 1_000, storage_bytes=100_000)}


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    return s3_test_bucket(monkeypatch)


@pytest.fixture
def settings(tmp_path: Path, bucket: S3Bucket) -> Settings:
    return inference_settings(tmp_path, storage_url=bucket.storage_url(),
                              s3_endpoint_url=bucket.endpoint, tiers=TIERS)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_model(tmp_path_factory.mktemp("gguf") / "m.gguf", seed=11).read_bytes()


def _object(bucket: S3Bucket, model_id: str) -> bytes:
    body = bucket.client().get_object(Bucket=bucket.bucket,
                                      Key=f"models-store/models/{model_id}.gguf")["Body"]
    return bytes(body.read())


def _new_model(url: str, who: Account, name: str) -> str:
    r = httpx.post(url + "/v1/models", json={"name": name}, headers=who.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_raw_put_lands_in_the_bucket_and_downloads_with_ranges(
        live_server: Any, customer: Account, bucket: S3Bucket, settings: Settings,
        gguf: bytes) -> None:
    model_id = _new_model(live_server.url, customer, "tiny")
    r = httpx.put(live_server.url + f"/v1/models/{model_id}/file", content=gguf,
                  headers={**customer.headers, **OCTETS})
    assert r.status_code == 200, r.text
    assert r.json()["sha256"] == hashlib.sha256(gguf).hexdigest()
    assert _object(bucket, model_id) == gguf
    assert list(settings.uploads_dir.iterdir()) == []  # the staged partial moved on

    file_url = live_server.url + f"/v1/models/{model_id}/file"
    assert httpx.get(file_url, headers=customer.headers).content == gguf
    # Ranges straight from the bucket (the process's cached copy removed first).
    for cached in (settings.data_dir / "cache").rglob("*.gguf"):
        cached.unlink()
    r = httpx.get(file_url, headers={**customer.headers, "Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == gguf[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(gguf)}"
    r = httpx.get(file_url, headers={**customer.headers, "Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == gguf[-10:]


def test_multipart_create_lands_in_the_bucket(live_server: Any, customer: Account,
                                              bucket: S3Bucket, gguf: bytes) -> None:
    r = httpx.post(live_server.url + "/v1/models", headers=customer.headers,
                   files={"file": ("m.gguf", gguf, "application/octet-stream")},
                   data={"name": "small"})
    assert r.status_code == 201, r.text
    assert _object(bucket, r.json()["id"]) == gguf


def test_quota_refusal_leaves_the_bucket_empty(live_server: Any, bucket: S3Bucket,
                                               settings: Settings, gguf: bytes) -> None:
    small = make_account(settings, "small@example.com", tier="small")
    assert len(gguf) > TIERS["small"].storage_bytes
    model_id = _new_model(live_server.url, small, "big")
    r = httpx.put(live_server.url + f"/v1/models/{model_id}/file", content=gguf,
                  headers={**small.headers, **OCTETS})
    assert r.status_code == 413, r.text
    assert r.json()["type"].endswith("storage-quota-exceeded")
    assert bucket.keys() == []


def test_a_model_only_in_the_bucket_is_fetched_and_runs(
        live_server: Any, customer: Account, settings: Settings, tmp_path: Path) -> None:
    from tests.support.inference import ModelFiles

    source = ModelFiles(tmp_path / "files").get(context_length=256)
    model_id = _new_model(live_server.url, customer, "runner")
    r = httpx.put(live_server.url + f"/v1/models/{model_id}/file", content=source.read_bytes(),
                  headers={**customer.headers, **OCTETS})
    assert r.status_code == 200, r.text
    cached = list((settings.data_dir / "cache").rglob("*.gguf"))
    assert len(cached) == 1
    cached[0].unlink()  # the bucket holds the only copy now
    r = httpx.post(live_server.url + "/v1/inference", headers=customer.headers, timeout=60,
                   json={"model": model_id, "prompt": "hello", "max_tokens": 2,
                         "temperature": 0})
    assert r.status_code == 200, r.text
    assert cached[0].read_bytes() == source.read_bytes()  # fetched back into the cache


# -- the registry on the bucket: the row follows the object ---------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[peewee.Database]:
    with temporary_database("sqlite", tmp_path) as database:
        yield database


def test_a_failed_insert_takes_the_object_back(db: peewee.Database, settings: Settings,
                                               bucket: S3Bucket, gguf: bytes,
                                               tmp_path: Path) -> None:
    source = tmp_path / "m.gguf"
    source.write_bytes(gguf)
    db.execute_sql("CREATE TRIGGER refuse BEFORE INSERT ON models "
                   "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    with pytest.raises(peewee.IntegrityError):
        registry.register_file(settings, source, owner_id=None, name="m")
    assert bucket.keys() == []
    assert list((settings.data_dir / "cache").rglob("*.gguf")) == []
    db.execute_sql("DROP TRIGGER refuse")
    source.write_bytes(gguf)  # the failed publish consumed it, as a successful one would
    record = registry.register_file(settings, source, owner_id=None, name="m")
    assert bucket.keys() == [f"models-store/{record.file_path}"]


def test_recover_removes_orphan_objects(db: peewee.Database, settings: Settings,
                                        bucket: S3Bucket, gguf: bytes, tmp_path: Path) -> None:
    source = tmp_path / "m.gguf"
    source.write_bytes(gguf)
    record = registry.register_file(settings, source, owner_id=None, name="m")
    bucket.client().put_object(Bucket=bucket.bucket, Key="models-store/models/mdl_orphan.gguf",
                               Body=b"left by a crash")
    assert registry.recover(settings)["orphans_removed"] == 0  # young: may still be committing
    later = time.time() + registry.ORPHAN_AGE_S + 60
    assert registry.recover(settings, now=later)["orphans_removed"] == 1
    assert bucket.keys() == [f"models-store/{record.file_path}"]


def test_a_failed_upload_leaves_no_row(db: peewee.Database, settings: Settings,
                                       bucket: S3Bucket, gguf: bytes) -> None:
    from bitnet_sdk.auth.principal import Principal

    owner = Principal(User.create(email="o@example.com").id)
    record = registry.create_model(owner, name="m")
    bucket.client().delete_bucket(Bucket=bucket.bucket)  # the storage is gone
    partial = PartialFile(settings.uploads_dir, max_bytes=len(gguf))
    partial.write(gguf)
    partial.complete()
    with partial, pytest.raises(Exception, match=r"NoSuchBucket|does not exist"):
        registry.attach_file(owner, record.id, partial, registry.inspect_file(partial.path),
                             settings)
    row = ModelRecord.get_by_id(record.id)
    assert (row.status, row.file_path) == ("pending_upload", None)


def test_large_files_go_multipart_and_the_cache_keeps_its_bound(
        bucket: S3Bucket, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = hashlib.sha256(b"seed").digest() * (40 * 1024**2 // 32)  # 40 MiB: three parts
    big.write_bytes(data)
    writer = storage.S3Storage(bucket.bucket, "p", client=storage._s3_client(bucket.endpoint),
                               cache_dir=tmp_path / "cache-a", cache_bytes=len(data) + 1)

    class Staged:
        path = big

        def publish(self, target: Path) -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            big.replace(target)

    writer.publish(Staged(), "models/a.bin")
    etag = bucket.client().head_object(Bucket=bucket.bucket, Key="p/models/a.bin")["ETag"]
    assert etag.strip('"').endswith("-3")  # S3's multipart ETag: three parts
    edge = 16 * 1024**2
    assert b"".join(writer.read("models/a.bin", edge - 5, 10)) == data[edge - 5:edge + 5]

    reader = storage.S3Storage(bucket.bucket, "p", client=storage._s3_client(bucket.endpoint),
                               cache_dir=tmp_path / "cache-b", cache_bytes=len(data) + 1)
    assert b"".join(reader.read("models/a.bin", edge - 5, 10)) == data[edge - 5:edge + 5]
    first = reader.local_path("models/a.bin")
    assert first.read_bytes() == data
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 10)
    bucket.client().upload_file(str(small), bucket.bucket, "p/models/b.bin")
    second = reader.local_path("models/b.bin")
    assert second.read_bytes() == b"x" * 10 and not first.exists()  # over the bound: LRU out
    with pytest.raises(FileNotFoundError):
        reader.local_path("models/missing.bin")
    writer.delete("models/a.bin")
    with pytest.raises(FileNotFoundError):
        reader.size("models/a.bin")


def test_serve_refuses_to_start_without_its_bucket(bucket: S3Bucket, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BITNET_")}
    result = subprocess.run(
        [sys.executable, "-m", "bitnet_sdk.cli", "serve", "--port", "0", "--no-demo",
         "--data-dir", str(tmp_path / "data"), "--storage", f"s3://{bucket.bucket}-missing/x",
         "--s3-endpoint", bucket.endpoint],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"{bucket.bucket}-missing" in result.stderr and "Traceback" not in result.stderr
