"""Streamed uploads to disk: bounded memory, a digest on the way, atomic publication.

An upload is written to a *partial* file in ``Settings.uploads_dir`` and
renamed into place only when it is complete, checked and valid, so a crash or
restart never leaves a half-written model where a model is expected. From its
creation until it is published or discarded, a partial is held under an
exclusive ``flock`` by its writer; :func:`clean_partials` (run at server start)
removes only partials nobody holds, so several server processes can share one
data directory.

Memory stays bounded whatever the size: incoming chunks are gathered into
blocks of :data:`BLOCK_SIZE` and each block is hashed and written in a worker
thread (``hashlib`` and file writes release the GIL), never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import BinaryIO

from bitnet_sdk.config import Settings

try:  # POSIX; elsewhere stale partials are recognised by age alone
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "BLOCK_SIZE",
    "PARTIAL_SUFFIX",
    "DigestMismatch",
    "IncompleteUpload",
    "PartialFile",
    "UploadError",
    "UploadTooLarge",
    "clean_partials",
    "copy_to_partial",
    "multipart_limit",
    "publish",
    "receive_to_partial",
    "sha256_file",
]

log = logging.getLogger(__name__)

#: Bytes gathered before one write (and hash update) in a worker thread.
BLOCK_SIZE = 1 << 20
PARTIAL_SUFFIX = ".partial"
#: Without ``flock``, partials untouched this long are taken to be abandoned.
_STALE_AGE_S = 24 * 3600.0


class UploadError(Exception):
    """An upload that cannot be stored; its partial file is already removed."""


class UploadTooLarge(UploadError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the upload exceeds the limit of {limit} bytes")
        self.limit = limit


class IncompleteUpload(UploadError):
    """The body ended before (or went past) the size the client announced."""


class DigestMismatch(UploadError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"SHA-256 of the upload is {actual}, the client announced {expected}")
        self.expected = expected
        self.actual = actual


def multipart_limit(settings: Settings) -> int:
    """Largest multipart body accepted: ``max_multipart_bytes``, never more than
    ``max_upload_bytes``."""
    return min(settings.max_multipart_bytes, settings.max_upload_bytes)


class PartialFile:
    """A new, locked partial file in ``directory`` that hashes what is written to it.

    Life cycle: :meth:`write` blocks, :meth:`complete` (flush to stable storage,
    fix ``size`` and ``sha256``), then :meth:`publish` it into place or
    :meth:`discard` it. The ``flock`` is held until one of those, so a cleaner
    in another process never removes a partial waiting for validation. As a
    context manager, leaving the block without publishing discards the file.
    Every method blocks; call them from a worker thread.
    """

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.sha256: str | None = None
        self.published = False
        self._hash = hashlib.sha256()
        directory.mkdir(parents=True, exist_ok=True)
        self.path, self._fh = _create_locked(directory)

    @classmethod
    def adopt(cls, path: Path, fh: BinaryIO, *, size: int, sha256: str) -> PartialFile:
        """A completed partial from a file already written, flushed and ``flock``-ed through
        ``fh`` (a finished resumable upload moved to ``path``)."""
        partial = cls.__new__(cls)
        partial.max_bytes = partial.size = size
        partial.sha256 = sha256
        partial.published = False
        partial._hash = hashlib.sha256()
        partial.path, partial._fh = path, fh
        return partial

    def write(self, data: bytes | memoryview) -> None:
        if self.sha256 is not None:
            raise RuntimeError("write after complete()")
        if self.size + len(data) > self.max_bytes:
            raise UploadTooLarge(self.max_bytes)
        self._hash.update(data)
        self._fh.write(data)
        self.size += len(data)

    def complete(self) -> str:
        """Flush the data to stable storage; returns (and keeps) the hex SHA-256."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.sha256 = self._hash.hexdigest()
        return self.sha256

    def publish(self, target: Path) -> None:
        """Rename the completed file to ``target`` atomically (an existing file is replaced)."""
        if self.sha256 is None:
            raise RuntimeError("publish() before complete()")
        publish(self.path, target)
        self.published = True
        self._fh.close()
        self.path = target

    def discard(self) -> None:
        """Remove the partial (nothing once published; safe to call twice)."""
        if self.published:
            return
        if not self._fh.closed:
            self.path.unlink(missing_ok=True)  # while still locked: no cleaner races us
            self._fh.close()

    def __enter__(self) -> PartialFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.discard()


def _create_locked(directory: Path) -> tuple[Path, BinaryIO]:
    """Create and ``flock`` a fresh partial; retry if a cleaner removed it in between."""
    while True:
        path = directory / f"{secrets.token_hex(12)}{PARTIAL_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fh = os.fdopen(fd, "wb", buffering=0)
        if fcntl is None:
            return path, fh
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return path, fh
        fh.close()


async def receive_to_partial(
    chunks: AsyncIterable[bytes],
    directory: Path,
    *,
    max_bytes: int,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
) -> PartialFile:
    """Write a streamed body to a new partial file and check it; returns it completed.

    Raises :class:`UploadTooLarge` as soon as more than ``max_bytes`` bytes
    arrived, :class:`IncompleteUpload` when the body is shorter or longer than
    ``expected_size``, :class:`DigestMismatch` when ``expected_sha256``
    differs. In every failure (also the client going away or the task being
    cancelled) the partial is removed before the exception leaves. On success
    the caller owns the file: publish or discard it.
    """
    partial = await asyncio.to_thread(PartialFile, directory, max_bytes=max_bytes)
    try:
        block: list[bytes] = []
        pending = received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise UploadTooLarge(max_bytes)
            if expected_size is not None and received > expected_size:
                raise IncompleteUpload(f"the body is longer than the announced {expected_size} bytes")
            block.append(chunk)
            pending += len(chunk)
            if pending >= BLOCK_SIZE:
                await asyncio.to_thread(partial.write, b"".join(block))
                block, pending = [], 0
        if block:
            await asyncio.to_thread(partial.write, b"".join(block))
        if expected_size is not None and partial.size != expected_size:
            raise IncompleteUpload(
                f"the body has {partial.size} bytes, the client announced {expected_size}")
        await asyncio.to_thread(partial.complete)
        _check_digest(partial, expected_sha256)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(partial.discard))
        raise
    return partial


def copy_to_partial(
    source: BinaryIO,
    directory: Path,
    *,
    max_bytes: int,
    expected_sha256: str | None = None,
) -> PartialFile:
    """Copy an open file (a multipart part) to a new partial file; blocking.

    Same checks, clean-up and ownership as :func:`receive_to_partial`.
    """
    partial = PartialFile(directory, max_bytes=max_bytes)
    try:
        for block in iter(lambda: source.read(BLOCK_SIZE), b""):
            partial.write(block)
        partial.complete()
        _check_digest(partial, expected_sha256)
    except BaseException:
        partial.discard()
        raise
    return partial


def _check_digest(partial: PartialFile, expected: str | None) -> None:
    if expected is not None and partial.sha256 != expected.lower():
        raise DigestMismatch(expected.lower(), str(partial.sha256))


def publish(source: Path, target: Path) -> None:
    """Move a complete file into place atomically (same file system), durably.

    Readers see either no file or the whole file at ``target``; an existing
    ``target`` is replaced.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse directory fsync
        pass
    finally:
        os.close(fd)


def clean_partials(directory: Path, *, now: float | None = None) -> int:
    """Remove partial files no live writer holds (left by a crash or restart).

    Returns how many were removed. Partials of writers in other processes
    sharing the directory are locked and kept.
    """
    if not directory.is_dir():
        return 0
    now = time.time() if now is None else now
    removed = sum(_remove_if_abandoned(path, now) for path in directory.glob(f"*{PARTIAL_SUFFIX}"))
    if removed:
        log.info("removed %d abandoned partial upload(s) from %s", removed, directory)
    return removed


def _remove_if_abandoned(path: Path, now: float) -> bool:
    if fcntl is None:  # no locks to ask: only files left alone long enough count as abandoned
        try:
            if now - path.stat().st_mtime <= _STALE_AGE_S:
                return False
        except FileNotFoundError:
            return False
    return remove_unless_held(path)


def remove_unless_held(path: Path) -> bool:
    """Unlink ``path`` unless a live writer holds its lock; True when it was removed.

    Unlinks while holding the lock: a writer that created the file but has not locked it
    yet finds it gone after locking and starts a new one. Without ``fcntl`` (Windows)
    there are no locks to ask, and the file is removed.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (blocking)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()
