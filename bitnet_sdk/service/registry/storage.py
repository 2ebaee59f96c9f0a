"""Where model files live: one interface, a local folder (the default) or an S3-compatible bucket.

A model's file is named by a *key*, the relative POSIX path stored in
``ModelRecord.file_path`` (``models/mdl_….gguf``). Every implementation keeps
the same contract, on which the registry's "the row follows the file" rests:

* :meth:`ModelStorage.publish` takes a *complete, checked* local file (a
  :class:`Staged`: an upload's partial file in ``uploads_dir``, a quantizer's
  output) and makes it the object under ``key``, atomically: a reader sees no
  object or the whole one. Uploads are therefore always staged locally first
  (whatever the transport: raw PUT, multipart, a resumed upload), checked, then
  published; the object store never holds a partial model.
* :meth:`ModelStorage.local_path` is a local file with the object's bytes, for
  the code that maps a model into memory (inference, quantization). The local
  folder answers its own file; S3 answers a file in a bounded local cache,
  downloaded on first use.
* :meth:`ModelStorage.read` streams a byte range (the download endpoint).
* :meth:`ModelStorage.delete` removes the object (and any cached copy); a
  missing object is not an error.

Objects are immutable once published (a model takes a file only while it has
none), so a cached copy never goes stale. Every method blocks: call them from
worker threads.

The S3 implementation uses boto3, the AWS-maintained client, which works with
any S3-compatible service (MinIO, Ceph RGW, SeaweedFS, s3proxy, R2, …):
``upload_file`` streams a file from disk in multipart chunks (bounded memory)
and ``download_file`` does the same the other way.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlsplit

from bitnet_sdk.config import Settings
from bitnet_sdk.service.registry.uploads import BLOCK_SIZE, publish

__all__ = [
    "LocalStorage",
    "ModelStorage",
    "S3Storage",
    "Staged",
    "StorageError",
    "check_key",
    "for_settings",
]

log = logging.getLogger(__name__)

#: Multipart chunk of S3 uploads and downloads; memory per transfer is about
#: this times :data:`_S3_CONCURRENCY`.
_S3_CHUNK = 16 * 1024 * 1024
_S3_CONCURRENCY = 4


class StorageError(Exception):
    """The storage is misconfigured or unreachable (the message says which and where)."""


class Staged(Protocol):
    """A complete local file waiting to be published (e.g. an upload's ``PartialFile``)."""

    path: Path

    def publish(self, target: Path) -> None:
        """Move the file to ``target`` atomically (same file system); it is then owned there."""


class ModelStorage(Protocol):
    """Model files by key; see the module docstring for the contract."""

    def check(self) -> None:
        """Raise :class:`StorageError` when the storage cannot be used (run at start)."""

    def publish(self, staged: Staged, key: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def size(self, key: str) -> int:
        """Bytes of the object; ``FileNotFoundError`` when there is none."""

    def local_path(self, key: str) -> Path:
        """A local file with the object's bytes; ``FileNotFoundError`` when there is none."""

    def read(self, key: str, start: int, length: int) -> Iterator[bytes]:
        """``length`` bytes from ``start``, in blocks; ``FileNotFoundError`` when missing."""

    def listing(self, prefix: str) -> Iterator[tuple[str, float]]:
        """``(key, modified at, epoch seconds)`` of the objects whose key starts with ``prefix``."""


def check_key(key: str) -> PurePosixPath:
    """The key as a relative path without ``..`` (keys come from our own rows; still checked)."""
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"bad storage key {key!r}")
    return path


class LocalStorage:
    """Objects are files under ``root`` (``data_dir``): publish is a rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def publish(self, staged: Staged, key: str) -> None:
        staged.publish(self._path(key))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def local_path(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(path)
        return path

    def read(self, key: str, start: int, length: int) -> Iterator[bytes]:
        return _read_file(self._path(key), start, length)

    def listing(self, prefix: str) -> Iterator[tuple[str, float]]:
        folder = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not folder.is_dir():
            return
        for path in folder.rglob("*"):
            try:
                if path.is_file():
                    yield path.relative_to(self.root).as_posix(), path.stat().st_mtime
            except FileNotFoundError:
                continue


def _read_file(path: Path, start: int, length: int) -> Iterator[bytes]:
    # Opened now (not at the first next()): a missing file fails at the call.
    fh = open(path, "rb")  # closed by the generator

    def blocks() -> Iterator[bytes]:
        with fh:
            fh.seek(start)
            left = length
            while left > 0:
                block = fh.read(min(BLOCK_SIZE, left))
                if not block:
                    raise OSError(f"{path} ended early")
                left -= len(block)
                yield block

    return blocks()


class S3Storage:
    """Objects in an S3-compatible bucket under ``prefix``, with a bounded local cache.

    ``cache_dir`` holds the files this process serves (and the files it
    published), at most ``cache_bytes`` in total: after each download the
    least recently used files are removed (a file being served stays readable
    after its removal, POSIX keeps open files). A single model larger than the
    bound is still cached: it has to be mapped to be served.
    """

    def __init__(self, bucket: str, prefix: str, *, client: Any, cache_dir: Path,
                 cache_bytes: int) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.cache_dir = cache_dir
        self.cache_bytes = cache_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def object_key(self, key: str) -> str:
        name = str(check_key(key))
        return f"{self.prefix}/{name}" if self.prefix else name

    def _cached(self, key: str) -> Path:
        return self.cache_dir / check_key(key)

    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=_S3_CHUNK, multipart_chunksize=_S3_CHUNK,
                              max_concurrency=_S3_CONCURRENCY, use_threads=True)

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"the bucket {self.bucket!r} cannot be used: {exc}") from exc
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def publish(self, staged: Staged, key: str) -> None:
        """Multipart upload streamed from the staged file, then the file moves into the cache.

        S3 makes an object visible only when its upload completes, so a crash
        mid-upload leaves no object (incomplete multipart uploads are aborted by
        boto3 on error; a bucket lifecycle rule should expire those a crash leaves).
        """
        self.client.upload_file(str(staged.path), self.bucket, self.object_key(key),
                                Config=self._transfer())
        cached = self._cached(key)
        staged.publish(cached)
        _touch(cached)
        self._evict(keep=cached)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        self._cached(key).unlink(missing_ok=True)

    def size(self, key: str) -> int:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            raise _missing(exc, key) from exc
        return int(head["ContentLength"])

    def local_path(self, key: str) -> Path:
        path = self._cached(key)
        if path.is_file():
            _touch(path)
            return path
        with self._lock(key):
            if path.is_file():  # another thread fetched it while we waited
                return path
            self._download(key, path)
        self._evict(keep=path)
        return path

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _download(self, key: str, path: Path) -> None:
        """Fetch to a temporary name beside ``path`` and rename: readers see whole files only."""
        from botocore.exceptions import ClientError

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            self.client.download_file(self.bucket, self.object_key(key), str(tmp),
                                      Config=self._transfer())
            publish(tmp, path)
        except ClientError as exc:
            raise _missing(exc, key) from exc
        finally:
            tmp.unlink(missing_ok=True)
        log.info("fetched %s from s3://%s into the cache", key, self.bucket)

    def read(self, key: str, start: int, length: int) -> Iterator[bytes]:
        """A ranged GET (served from the cache when the file is there)."""
        from botocore.exceptions import ClientError

        cached = self._cached(key)
        if cached.is_file():
            return _read_file(cached, start, length)
        if length <= 0:
            return iter(())
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key),
                                              Range=f"bytes={start}-{start + length - 1}")
        except ClientError as exc:
            raise _missing(exc, key) from exc
        body = response["Body"]

        def blocks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(BLOCK_SIZE)
            finally:
                body.close()

        return blocks()

    def listing(self, prefix: str) -> Iterator[tuple[str, float]]:
        base = self.object_key(prefix.rstrip("/")) + "/" if prefix.strip("/") else \
            (f"{self.prefix}/" if self.prefix else "")
        start = len(f"{self.prefix}/") if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                     Prefix=base)
        for page in pages:
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):  # folder markers of some services
                    yield item["Key"][start:], item["LastModified"].timestamp()

    def _evict(self, *, keep: Path) -> None:
        """Remove least recently used cached files until the cache fits its bound."""
        files = []
        for path in self.cache_dir.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime_ns, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.cache_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            log.info("evicted %s from the model cache", path)


def _touch(path: Path) -> None:
    """Mark a cached file used (the eviction order), whatever the mount's atime policy."""
    try:
        os.utime(path)
    except OSError:
        pass


def _missing(exc: Any, key: str) -> Exception:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in {"404", "NoSuchKey", "NotFound"}:
        return FileNotFoundError(key)
    return exc


def _s3_client(endpoint_url: str | None) -> Any:
    """A boto3 client: credentials and region from the usual ``AWS_*`` variables or files.

    Checksums only when the operation requires them: newer boto3 sends CRC
    headers by default that several S3-compatible servers reject.
    """
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") \
        or os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"addressing_style": "path" if endpoint else "auto"},
                    retries={"max_attempts": 5, "mode": "standard"})
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                          config=config)


def for_settings(settings: Settings) -> ModelStorage:
    """The storage ``settings.storage_url`` names (one instance per configuration and process).

    Empty: the local ``data_dir``. ``s3://bucket/prefix``: that bucket, the
    endpoint from ``settings.s3_endpoint_url`` or ``AWS_ENDPOINT_URL``.
    """
    # The pid is part of the key: a forked server process makes its own client
    # (boto3's connection pools are not shared across fork).
    return _storage(settings.storage_url, settings.s3_endpoint_url, settings.data_dir,
                    settings.storage_cache_bytes, os.getpid())


@functools.lru_cache(maxsize=16)
def _storage(url: str, endpoint: str, data_dir: Path, cache_bytes: int,
             _pid: int) -> ModelStorage:
    if not url:
        return LocalStorage(data_dir)
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageError(f"storage URL {url!r} is not s3://bucket[/prefix]")
    prefix = parts.path.strip("/")
    cache = data_dir / "cache" / "s3" / parts.netloc / prefix
    return S3Storage(parts.netloc, prefix, client=_s3_client(endpoint or None),
                     cache_dir=cache, cache_bytes=cache_bytes)
