"""The backend's prepared weights, written once to a cache file and memory-mapped afterwards.

Preparing a model (unpacking every ternary tensor from the GGUF file and
repacking it into the backend's layout) costs seconds per gigabyte and keeps
the result in anonymous memory. A backend that declares a ``layout_version``
and implements ``prepared_arrays``/``prepared_from_arrays`` gets its prepared
weights written to one file here after the first load; every later load of
the same model file maps that file read-only and hands the backend views of
it, so loading costs a page-table walk and the weights are shared page cache
(counted once however many processes load the model).

Key: the model file's resolved path, size, modification time (ns) and inode,
plus the backend's name and ``layout_version``. A file that changes gets a
new key; the old entry of the same path and layout is deleted when the new
one is written. A damaged or foreign cache file is ignored and rewritten.

Location: ``$BITNET_CACHE_DIR/weights``, else ``$XDG_CACHE_HOME/bitnet_sdk/weights``,
else ``~/.cache/bitnet_sdk/weights``. ``BITNET_WEIGHT_CACHE=off`` disables it;
models whose prepared weights are smaller than ``BITNET_WEIGHT_CACHE_MIN_MB``
(default 8) are not cached (loading them is quick anyway, and tests do not
fill the cache with temporary files).

File layout: ``MAGIC``, a little-endian ``u64`` header length, the JSON
header (key fields and, per entry, the backend's metadata and each array's
offset from the data start, dtype and shape), then the arrays, each starting on a 64-byte
boundary. Writes go to a temporary name and are renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bitnet_sdk.backends.base import Backend

__all__ = ["CACHE_ENV", "ENABLE_ENV", "MIN_MB_ENV", "WeightCache", "cache_root", "file_identity"]

log = logging.getLogger(__name__)

CACHE_ENV = "BITNET_CACHE_DIR"
ENABLE_ENV = "BITNET_WEIGHT_CACHE"
MIN_MB_ENV = "BITNET_WEIGHT_CACHE_MIN_MB"
MAGIC = b"BNWCACHE1\0\0\0\0\0\0\0"
_ALIGN = 64


def cache_root(kind: str = "weights") -> Path:
    """Directory of one kind of cache file (``weights``, ``tokenizers``; not created here)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / kind
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bitnet_sdk" / kind


def file_identity(model_path: Path) -> dict[str, Any]:
    """What identifies one version of a model file in cache keys: its resolved path, size,
    modification time (ns) and inode (a rewritten or replaced file gets a new key)."""
    st = model_path.stat()
    return {"path": str(model_path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _identity(model_path: Path, backend: Backend) -> dict[str, Any]:
    return {**file_identity(model_path), "backend": backend.name, "layout": backend.layout_version}


class WeightCache:
    """Prepared weights of one model file for one backend: read from the cache file when
    it is there (``get``), else collected (``put``) and written by ``commit``.

    Not thread-safe; one instance serves one ``load``.
    """

    def __init__(self, model_path: str | os.PathLike[str], backend: Backend) -> None:
        self.backend = backend
        path = Path(model_path).resolve()
        self.identity = _identity(path, backend)
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:24]
        # entries of one path and layout share a prefix: a new one replaces the old ones
        owner = f"{path}\0{backend.name}\0{backend.layout_version}"
        self._prefix = hashlib.sha256(owner.encode()).hexdigest()[:16]
        self.path = cache_root() / f"{self._prefix}-{digest}.bnw"
        self._entries: dict[str, dict[str, Any]] = {}
        self._map: mmap.mmap | None = None
        self._pending: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = {}
        self._open()

    @staticmethod
    def enabled(backend: Backend) -> bool:
        """Whether ``backend`` can be cached and caching is not switched off."""
        off = os.environ.get(ENABLE_ENV, "").strip().lower() in ("0", "off", "false", "no")
        return not off and getattr(backend, "layout_version", None) is not None

    @property
    def hit(self) -> bool:
        """True when the cache file was found and is being read."""
        return self._map is not None

    def _open(self) -> None:
        try:
            with open(self.path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return
        try:
            if mm[: len(MAGIC)] != MAGIC:
                raise ValueError("bad magic")
            n = int.from_bytes(mm[len(MAGIC) : len(MAGIC) + 8], "little")
            header = json.loads(mm[len(MAGIC) + 8 : len(MAGIC) + 8 + n])
            if header.get("identity") != self.identity:
                raise ValueError("another file's entry")
            start = _data_start(n)
            for entry in header["entries"].values():
                for key, (off, dtype, shape) in entry["arrays"].items():
                    if start + off + int(np.prod(shape)) * np.dtype(dtype).itemsize > len(mm):
                        raise ValueError("truncated")
                    entry["arrays"][key] = (start + off, dtype, shape)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring damaged weight cache %s: %s", self.path, exc)
            mm.close()
            return
        self._entries, self._map = header["entries"], mm

    def get(self, name: str) -> Any | None:
        """The prepared weight ``name`` backed by the mapped file, or ``None``."""
        mm = self._map
        entry = self._entries.get(name) if mm is not None else None
        if entry is None or mm is None:
            return None
        arrays = {key: np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape)), offset=off).reshape(shape)
                  for key, (off, dtype, shape) in entry["arrays"].items()}  # fmt: skip
        return self.backend.prepared_from_arrays(entry["meta"], arrays)

    def put(self, name: str, prepared: Any) -> None:
        """Remember ``prepared`` for ``commit`` (when the backend can export it)."""
        if self._map is not None:
            return
        exported = self.backend.prepared_arrays(prepared)
        if exported is not None:
            self._pending[name] = exported

    def commit(self) -> bool:
        """Write the collected weights (on a miss, if big enough); True when written."""
        if self._map is not None or not self._pending:
            return False
        total = sum(a.nbytes for _, arrays in self._pending.values() for a in arrays.values())
        if total < float(os.environ.get(MIN_MB_ENV, "8")) * 2**20:
            return False
        try:
            self._write()
        except OSError as exc:
            log.warning("could not write the weight cache %s: %s", self.path, exc)
            return False
        finally:
            self._pending.clear()
        return True

    def _write(self) -> None:
        entries, order, offset = {}, [], 0
        for name, (meta, arrays) in self._pending.items():
            placed = {}
            for key, a in arrays.items():
                offset = _aligned(offset)
                placed[key] = (offset, a.dtype.str, list(a.shape))
                order.append((offset, a))
                offset += a.nbytes
            entries[name] = {"meta": meta, "arrays": placed}
        header = json.dumps({"identity": self.identity, "entries": entries}).encode()
        start = _data_start(len(header))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + len(header).to_bytes(8, "little") + header)
                for off, a in order:
                    f.seek(start + off)
                    f.write(np.ascontiguousarray(a).data.cast("B"))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for old in self.path.parent.glob(f"{self._prefix}-*.bnw"):
            if old != self.path:
                old.unlink(missing_ok=True)


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _data_start(header_len: int) -> int:
    """Where the arrays begin: after magic, length and header, on a 64-byte boundary
    (array offsets in the header are relative to it)."""
    return _aligned(len(MAGIC) + 8 + header_len)
