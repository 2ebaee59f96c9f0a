"""Resumable uploads: a model's file sent in ``Content-Range`` pieces, kept across broken
connections, server restarts and ``kill -9``.

One file per model in ``<uploads_dir>/resumable/``, named ``<model_id>-<total>.upload``:
its size is what the server holds, its name the size the client announced. An offset is
only ever reported after an ``fsync`` of that file (:func:`state`, :meth:`Piece.sync`), so
an offset a client was told is durable. A piece's writer holds an exclusive ``flock`` on the
file for the whole piece: a second concurrent piece is refused (:class:`UploadBusy`), and a
writer killed with ``-9`` releases it with its process. When the last byte arrives the file
is moved into the ordinary partial-upload path (:meth:`Piece.into_partial`) and checked,
validated and published like a whole-file upload.

Leftovers go when the model is deleted or a finished upload replaces them (:func:`forget`)
and, at server start, when untouched for :data:`MAX_AGE_S` (:func:`clean_stale`).
Every function blocks; call them from a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bitnet_sdk.service.registry import uploads

try:  # POSIX; elsewhere concurrent pieces are not detected
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MAX_AGE_S",
    "ContentRange",
    "OffsetMismatch",
    "Piece",
    "UploadBusy",
    "UploadState",
    "clean_stale",
    "forget",
    "open_piece",
    "parse_content_range",
    "state",
]

#: A resumable upload untouched this long is removed at server start (the spec says 7 days).
MAX_AGE_S = 7 * 24 * 3600.0
_SUBDIR = "resumable"
_SUFFIX = ".upload"
_RANGE = re.compile(r"bytes ([0-9]{1,15})-([0-9]{1,15})/([0-9]{1,15})")


@dataclass(frozen=True)
class ContentRange:
    """One piece: bytes ``first``..``last`` (inclusive) of a ``total``-byte file."""

    first: int
    last: int
    total: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def parse_content_range(header: str) -> ContentRange:
    """``bytes FIRST-LAST/TOTAL``; ``ValueError`` saying what is wrong otherwise."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        raise ValueError(f"Content-Range {header!r} is not 'bytes FIRST-LAST/TOTAL'")
    first, last, total = (int(g) for g in match.groups())
    if last < first or last >= total:
        raise ValueError(f"Content-Range {header!r} needs FIRST <= LAST < TOTAL")
    return ContentRange(first, last, total)


@dataclass(frozen=True)
class UploadState:
    """Bytes held durably, and the announced size (None: no upload in progress)."""

    offset: int
    total: int | None


class OffsetMismatch(uploads.UploadError):
    """The piece does not continue the upload the server holds."""

    def __init__(self, message: str, held: UploadState) -> None:
        super().__init__(f"{message}; the server holds {held.offset} bytes"
                         + (f" of {held.total}" if held.total is not None else ""))
        self.held = held


class UploadBusy(uploads.UploadError):
    """Another piece of this model's upload is being received right now."""


def _directory(uploads_dir: Path) -> Path:
    return uploads_dir / _SUBDIR


def _find(directory: Path, model_id: str) -> Path | None:
    found = sorted(directory.glob(f"{model_id}-*{_SUFFIX}"))
    return found[0] if found else None


def _total(path: Path) -> int:
    return int(path.name[: -len(_SUFFIX)].rsplit("-", 1)[1])


def state(uploads_dir: Path, model_id: str) -> UploadState:
    """What the server holds of ``model_id``'s upload, flushed to stable storage first."""
    path = _find(_directory(uploads_dir), model_id)
    if path is None:
        return UploadState(0, None)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # finished or forgotten meanwhile
        return UploadState(0, None)
    try:
        os.fsync(fd)
        return UploadState(os.fstat(fd).st_size, _total(path))
    finally:
        os.close(fd)


class Piece:
    """The model's upload file, locked and open for appending one piece.

    :meth:`write` blocks, :meth:`sync` (flush; returns the durable offset), then
    :meth:`release`, or :meth:`into_partial` once ``offset == total``. The methods take
    one lock, so a :meth:`release` on a cancelled request waits for a write still running
    in another thread instead of closing the file under it.
    """

    def __init__(self, path: Path, fd: int, offset: int, total: int) -> None:
        self.path = path
        self.total = total
        self.offset = offset
        self._fd = fd
        self._lock = threading.Lock()
        # A piece that starts the file can hash on the way; a resumed one hashes at the end.
        self._hash = hashlib.sha256() if offset == 0 else None

    def write(self, data: bytes) -> None:
        with self._lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.offset + len(data) > self.total:
            raise uploads.IncompleteUpload(
                f"the body goes past the announced total of {self.total} bytes")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self._hash is not None:
            self._hash.update(data)
        self.offset += len(data)

    def sync(self) -> int:
        """Flush to stable storage; returns the offset that is now durable."""
        with self._lock:
            os.fsync(self._fd)
            return self.offset

    def release(self) -> None:
        """Flush and release the file (and its lock); the bytes stay for the next piece.
        Nothing once :meth:`into_partial` took the file; safe to call twice."""
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    def into_partial(self, uploads_dir: Path,
                     expected_sha256: str | None) -> uploads.PartialFile:
        """The complete file as a completed, locked :class:`~uploads.PartialFile`.

        A digest other than ``expected_sha256`` removes the upload (its bytes are wrong;
        resuming cannot mend them) and raises :class:`~uploads.DigestMismatch`.
        """
        with self._lock:
            return self._into_partial(uploads_dir, expected_sha256)

    def _into_partial(self, uploads_dir: Path,
                      expected_sha256: str | None) -> uploads.PartialFile:
        if self.offset != self.total:
            raise RuntimeError("into_partial() before the last byte")
        os.fsync(self._fd)
        digest = (self._hash.hexdigest() if self._hash is not None
                  else uploads.sha256_file(self.path))
        if expected_sha256 is not None and digest != expected_sha256.lower():
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1
            raise uploads.DigestMismatch(expected_sha256.lower(), digest)
        target = uploads_dir / f"{secrets.token_hex(12)}{uploads.PARTIAL_SUFFIX}"
        os.replace(self.path, target)  # same inode: our lock goes with it
        partial = uploads.PartialFile.adopt(target, os.fdopen(self._fd, "wb", buffering=0),
                                            size=self.total, sha256=digest)
        self._fd = -1
        return partial


def open_piece(uploads_dir: Path, model_id: str, piece: ContentRange) -> Piece:
    """Lock the model's upload file and check that ``piece`` continues it.

    A piece starting at 0 starts over (creating the file, or emptying one of another
    total). Raises :class:`UploadBusy` when another writer holds the file and
    :class:`OffsetMismatch` when the piece does not start at the held offset or announces
    another total.
    """
    directory = _directory(uploads_dir)
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        path = _find(directory, model_id)
        try:
            if path is None:
                if piece.first != 0:
                    raise OffsetMismatch(f"the piece starts at {piece.first}, not at 0",
                                         UploadState(0, None))
                path = directory / f"{model_id}-{piece.total}{_SUFFIX}"
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
            else:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except (FileExistsError, FileNotFoundError):
            continue  # another writer created or removed it in between: look again
        if not _lock(fd, path):
            continue
        held = UploadState(os.fstat(fd).st_size, _total(path))
        if piece.first == 0 and (held.total != piece.total or held.offset):
            path.unlink()  # start over: while locked, so nobody appends to the old inode
            os.close(fd)
            continue
        if held.total != piece.total:
            os.close(fd)
            raise OffsetMismatch(f"the piece announces {piece.total} bytes in all", held)
        if piece.first != held.offset:
            os.close(fd)
            raise OffsetMismatch(f"the piece starts at {piece.first}", held)
        os.utime(fd)  # touched: not stale
        return Piece(path, fd, held.offset, held.total)


def _lock(fd: int, path: Path) -> bool:
    """Take the writer's lock; False if the file was replaced meanwhile (look again)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UploadBusy("another piece of this upload is being received") from None
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
    return same


def forget(uploads_dir: Path, model_id: str) -> bool:
    """Remove the model's resumable upload unless a writer holds it; True if removed."""
    path = _find(_directory(uploads_dir), model_id)
    return path is not None and uploads.remove_unless_held(path)


def clean_stale(uploads_dir: Path, *, now: float | None = None,
                max_age_s: float = MAX_AGE_S) -> int:
    """Remove resumable uploads untouched for ``max_age_s`` that nobody holds."""
    directory = _directory(uploads_dir)
    if not directory.is_dir():
        return 0
    now = time.time() if now is None else now
    removed = 0
    for path in directory.glob(f"*{_SUFFIX}"):
        try:
            old = now - path.stat().st_mtime > max_age_s
        except FileNotFoundError:
            continue
        removed += old and uploads.remove_unless_held(path)
    return removed
