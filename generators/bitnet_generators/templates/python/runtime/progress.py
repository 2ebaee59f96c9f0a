"""Upload progress: a file object that reports how much of it has been sent."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = ["ProgressFile", "with_progress"]

_CHUNK = 64 * 1024


class ProgressFile:
    """Wraps an open binary file: every chunk the upload reads calls ``callback(sent, total)``.

    ``total`` is the file's size from its current position (None when unknown). A retried
    upload rewinds the file (``seek``), and ``sent`` goes back with it. Everything else is
    the wrapped file's.
    """

    def __init__(self, file: IO[bytes], callback: Callable[[int, int | None], None],
                 total: int | None = None) -> None:
        self._file = file
        self._callback = callback
        self._start = file.tell() if file.seekable() else 0
        self.total = total if total is not None else _remaining(file, self._start)
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        if chunk:
            self.sent += len(chunk)
            self._callback(self.sent, self.total)
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._file.seek(offset, whence)
        self.sent = max(0, position - self._start)
        return position

    def __getattr__(self, name: str) -> Any:  # tell, fileno, name, close, ...
        return getattr(self._file, name)


def with_progress(file: IO[bytes], callback: Callable[[int, int | None], None],
                  total: int | None = None) -> ProgressFile:
    """``file`` reporting upload progress: ``File(payload=with_progress(f, print))``."""
    return ProgressFile(file, callback, total)


def _remaining(file: IO[bytes], start: int) -> int | None:
    try:
        return os.fstat(file.fileno()).st_size - start
    except (AttributeError, OSError, ValueError):
        return None
