"""Streamed uploads: content and digest, limits, clean-up on every failure, locks, memory."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.service.registry import uploads
from bitnet_sdk.service.registry.uploads import (
    DigestMismatch,
    IncompleteUpload,
    PartialFile,
    UploadTooLarge,
    clean_partials,
    copy_to_partial,
    multipart_limit,
    receive_to_partial,
)


class Body:
    """An async body of ``n_chunks`` chunks; counts how many were pulled."""

    def __init__(self, chunk: bytes, n_chunks: int) -> None:
        self.chunk = chunk
        self.n_chunks = n_chunks
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.n_chunks):
            self.pulled += 1
            yield self.chunk


def _receive(body: Body, directory: Path, **kwargs: object) -> PartialFile:
    return asyncio.run(receive_to_partial(body, directory, **kwargs))  # type: ignore[arg-type]


def _payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


def test_receive_writes_the_body_and_its_digest(tmp_path: Path) -> None:
    chunk = _payload(70_000)
    body = Body(chunk, 40)  # 2.8 MB: several blocks and a remainder
    partial = _receive(body, tmp_path, max_bytes=10**9, expected_size=len(chunk) * 40)
    data = chunk * 40
    assert partial.size == len(data)
    assert partial.sha256 == hashlib.sha256(data).hexdigest()
    assert partial.path.read_bytes() == data
    assert partial.path.parent == tmp_path and partial.path.name.endswith(uploads.PARTIAL_SUFFIX)
    target = tmp_path / "models" / "m.gguf"
    partial.publish(target)
    assert target.read_bytes() == data
    assert list(tmp_path.glob("*.partial")) == []
    partial.discard()  # after publishing: nothing to remove
    assert target.exists()


def test_digest_is_checked(tmp_path: Path) -> None:
    data = _payload(5000)
    good = hashlib.sha256(data).hexdigest()
    partial = _receive(Body(data, 1), tmp_path, max_bytes=10**6, expected_sha256=good.upper())
    partial.discard()
    with pytest.raises(DigestMismatch) as err:
        _receive(Body(data, 1), tmp_path, max_bytes=10**6, expected_sha256="0" * 64)
    assert err.value.actual == good
    assert list(tmp_path.iterdir()) == []


def test_too_large_stops_reading_at_once_and_removes_the_partial(tmp_path: Path) -> None:
    body = Body(b"x" * 1000, 1000)
    with pytest.raises(UploadTooLarge) as err:
        _receive(body, tmp_path, max_bytes=10_500)
    assert err.value.limit == 10_500
    assert body.pulled == 11  # the chunk that crossed the limit was the last one read
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("n_chunks", "expected"), [(3, 4000), (5, 4000)])
def test_body_of_another_length_than_announced(tmp_path: Path, n_chunks: int, expected: int) -> None:
    with pytest.raises(IncompleteUpload):
        _receive(Body(b"y" * 1000, n_chunks), tmp_path, max_bytes=10**6, expected_size=expected)
    assert list(tmp_path.iterdir()) == []


def test_cancelled_upload_leaves_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b"z" * 100_000
            started.set()
            await asyncio.sleep(3600)
            yield b"never"

        task = asyncio.create_task(receive_to_partial(slow_body(), tmp_path, max_bytes=10**9))
        await started.wait()
        assert len(list(tmp_path.glob("*.partial"))) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # the discard runs in a worker thread
            if not any(tmp_path.iterdir()):
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert list(tmp_path.iterdir()) == []


def test_copy_to_partial(tmp_path: Path) -> None:
    data = _payload(3 * uploads.BLOCK_SIZE + 17)
    with copy_to_partial(io.BytesIO(data), tmp_path, max_bytes=len(data)) as partial:
        assert partial.path.read_bytes() == data
        assert partial.sha256 == hashlib.sha256(data).hexdigest()
    assert list(tmp_path.iterdir()) == []  # left the block unpublished: discarded
    with pytest.raises(UploadTooLarge):
        copy_to_partial(io.BytesIO(data), tmp_path, max_bytes=len(data) - 1)
    with pytest.raises(DigestMismatch):
        copy_to_partial(io.BytesIO(data), tmp_path, max_bytes=len(data), expected_sha256="f" * 64)
    assert list(tmp_path.iterdir()) == []


def test_clean_partials_keeps_those_being_written(tmp_path: Path) -> None:
    stale = tmp_path / f"abc{uploads.PARTIAL_SUFFIX}"
    stale.write_bytes(b"left by a crash")
    other = tmp_path / "keep.gguf"
    other.write_bytes(b"not a partial")
    with PartialFile(tmp_path, max_bytes=100) as live:
        live.write(b"in progress")
        assert clean_partials(tmp_path) == 1
        assert live.path.exists() and not stale.exists() and other.exists()
        live.complete()  # complete but not yet published: still held
        assert clean_partials(tmp_path) == 0 and live.path.exists()
    assert not live.path.exists()
    assert clean_partials(tmp_path / "missing") == 0


def test_partial_created_after_a_cleaner_removed_it_is_recreated(tmp_path: Path, monkeypatch) -> None:
    # A cleaner that wins the race between O_EXCL creation and flock: the writer notices
    # (its path no longer names its file) and starts a new partial.
    real_flock = uploads.fcntl.flock
    calls = []

    def flock_after_cleaner(fd: int, op: int) -> None:
        if not calls:
            for path in tmp_path.glob("*.partial"):
                path.unlink()
        calls.append(fd)
        real_flock(fd, op)

    monkeypatch.setattr(uploads.fcntl, "flock", flock_after_cleaner)
    with PartialFile(tmp_path, max_bytes=100) as partial:
        assert len(calls) == 2
        assert partial.path.exists()
        assert os.path.samestat(os.stat(partial.path), os.fstat(calls[1]))


def test_multipart_limit_never_exceeds_the_upload_limit(tmp_path: Path) -> None:
    assert multipart_limit(Settings(data_dir=tmp_path)) == 64 * 1024**2
    assert multipart_limit(Settings(data_dir=tmp_path, max_upload_bytes=1000)) == 1000
    assert multipart_limit(Settings(data_dir=tmp_path, max_multipart_bytes=5000)) == 5000


def test_memory_stays_bounded_whatever_the_upload_size(tmp_path: Path) -> None:
    """64 MiB streamed through: the peak of Python allocations stays a few blocks."""
    chunk = _payload(64 * 1024)
    _receive(Body(chunk, 20), tmp_path, max_bytes=10**9).discard()  # warm up: lazy imports
    body = Body(chunk, 1024)
    tracemalloc.start()
    try:
        partial = _receive(body, tmp_path, max_bytes=10**9)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert partial.size == 64 * 1024**2
    partial.discard()
    # Two blocks in flight at most (one being joined, one being written) plus small objects.
    assert peak < 8 * uploads.BLOCK_SIZE, f"peak {peak / 2**20:.1f} MiB for a 64 MiB upload"
