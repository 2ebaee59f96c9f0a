"""Resumable uploads: a file sent in ``Content-Range`` pieces that continues from the offset
the server holds after a broken connection, a server restart or a 5xx.

The loop asks the server how much it holds, sends the rest in pieces of ``piece_size``
bytes (the SHA-256 of the whole file goes with each, the server checks it at the last
byte), and after a transient failure waits (doubling, up to 30 s) and asks again. An upload
that gave up is resumed by calling it again with the same target.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import IO, Any, TypeVar

from .errors import ApiConnectionError, ApiError

__all__ = ["DEFAULT_PIECE_SIZE", "Source", "aupload", "upload"]

#: Bytes per piece: one request per 64 MiB, so a retry of a refused piece costs little.
DEFAULT_PIECE_SIZE = 64 * 1024 * 1024
_BLOCK = 1 << 20
_RESUMABLE_CONFLICTS = ("upload-in-progress", "upload-offset-mismatch")
Status = TypeVar("Status")


class Source:
    """The file to send (an open, seekable binary file from its current position, or a
    path), with ``progress(sent, total)`` called as bytes go out."""

    def __init__(self, file: IO[bytes] | str | os.PathLike[str],
                 progress: Callable[[int, int | None], None] | None = None) -> None:
        self._own = isinstance(file, str | os.PathLike)
        self._file: IO[bytes] = open(file, "rb") if isinstance(file, str | os.PathLike) else file
        self._start = self._file.tell()
        self.size = self._file.seek(0, os.SEEK_END) - self._start
        self.progress = progress

    def sha256(self) -> str:
        digest = hashlib.sha256()
        self._file.seek(self._start)
        while block := self._file.read(_BLOCK):
            digest.update(block)
        return digest.hexdigest()

    def window(self, first: int, end: int) -> Window:
        return Window(self, first, end)

    def async_window(self, first: int, end: int) -> AsyncWindow:
        return AsyncWindow(self, first, end)

    def read_at(self, position: int, size: int) -> bytes:
        self._file.seek(self._start + position)
        return self._file.read(size)

    def close(self) -> None:
        if self._own:
            self._file.close()


class Window:
    """Bytes ``first``..``end`` (exclusive) of a :class:`Source` as a request body, read in
    blocks; not seekable, so the transport never replays it."""

    def __init__(self, source: Source, first: int, end: int) -> None:
        self.source, self.first, self.end = source, first, end

    def __iter__(self) -> Iterator[bytes]:
        position = self.first
        while position < self.end:
            block = self._block(position)
            position += len(block)
            yield block

    def _block(self, position: int) -> bytes:
        block = self.source.read_at(position, min(_BLOCK, self.end - position))
        if not block:
            raise OSError(f"the file ended at byte {position}, before {self.end}")
        if self.source.progress is not None:
            self.source.progress(position + len(block), self.source.size)
        return block


class AsyncWindow(Window):
    """The same body for the async client: only async iteration (httpx would take a sync
    iterator for a synchronous body), each block read in a worker thread."""

    __iter__ = None  # type: ignore[assignment]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        position = self.first
        while position < self.end:
            block = await asyncio.to_thread(self._block, position)
            position += len(block)
            yield block


def transient(exc: BaseException) -> bool:
    """Worth resuming after: no connection, a 5xx or 429, or a piece that raced another."""
    if isinstance(exc, ApiConnectionError):
        return True
    if isinstance(exc, ApiError):
        slug = exc.type.rpartition(":")[2]
        return exc.status >= 500 or exc.status == 429 or (
            exc.status == 409 and slug in _RESUMABLE_CONFLICTS)
    return False


def _held(state: Any, size: int) -> int:
    """The server's offset for this file (0 when it holds another size, or nothing)."""
    return int(state.offset) if getattr(state, "total_bytes", None) == size else 0


def _range(first: int, end: int, size: int) -> str:
    return f"bytes {first}-{end - 1}/{size}"


def _wait(failures: int) -> float:
    return min(30.0, 0.5 * (1 << min(failures - 1, 16)))


def upload(source: Source, *, state: Callable[[], Any],
           send: Callable[[Window, str, str], Status], piece_size: int = DEFAULT_PIECE_SIZE,
           retries: int = 5, sleep: Callable[[float], None] = time.sleep) -> Status:
    """Send ``source`` with ``send(body, content_range, sha256)`` from the offset ``state()``
    reports; returns the last piece's status (``complete``, with ``model``). Raises after
    ``retries`` transient failures in a row, or at once on any other error."""
    if source.size <= 0:
        raise ValueError("a resumable upload needs a non-empty file")
    digest, failures = source.sha256(), 0
    while True:
        try:
            offset = _held(state(), source.size)
            while True:
                end = min(source.size, offset + piece_size)
                status = send(source.window(offset, end), _range(offset, end, source.size), digest)
                if getattr(status, "complete", False):
                    return status
                held = int(getattr(status, "offset", offset))
                progressed, offset = held > offset, held
                if progressed:
                    failures = 0
                else:
                    raise ApiConnectionError("the server took no bytes of the piece")
        except Exception as exc:
            if not transient(exc) or failures >= retries:
                raise
            failures += 1
            sleep(_wait(failures))


async def aupload(source: Source, *, state: Callable[[], Awaitable[Any]],
                  send: Callable[[Window, str, str], Awaitable[Status]],
                  piece_size: int = DEFAULT_PIECE_SIZE, retries: int = 5) -> Status:
    """The ``async`` twin of :func:`upload`."""
    if source.size <= 0:
        raise ValueError("a resumable upload needs a non-empty file")
    digest, failures = await asyncio.to_thread(source.sha256), 0
    while True:
        try:
            offset = _held(await state(), source.size)
            while True:
                end = min(source.size, offset + piece_size)
                status = await send(source.async_window(offset, end),
                                    _range(offset, end, source.size), digest)
                if getattr(status, "complete", False):
                    return status
                held = int(getattr(status, "offset", offset))
                progressed, offset = held > offset, held
                if progressed:
                    failures = 0
                else:
                    raise ApiConnectionError("the server took no bytes of the piece")
        except Exception as exc:
            if not transient(exc) or failures >= retries:
                raise
            failures += 1
            await asyncio.sleep(_wait(failures))
