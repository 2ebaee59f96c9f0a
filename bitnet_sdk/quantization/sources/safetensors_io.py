"""Memory-mapped, tensor-by-tensor access to ``.safetensors`` files (single or sharded).

The format (huggingface/safetensors): an 8-byte little-endian header length, a JSON header
mapping each tensor name to ``dtype``, ``shape`` and ``data_offsets`` (relative to the end of the
header), then the raw little-endian data. We read the header ourselves and map the file with
``numpy.memmap`` instead of calling ``safetensors.safe_open(framework="numpy")`` because numpy has
no bfloat16, so ``safe_open`` cannot hand out BF16 tensors — the dtype of most checkpoints. Each
tensor is a zero-copy view of the map; nothing is read until a tensor is converted, so peak memory
stays near the tensor being quantized.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitnet_sdk.quantization.errors import UnsupportedSourceError

__all__ = ["SafetensorsFile", "ShardedSafetensors", "TensorMeta"]

_NP_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}
_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit


@dataclass(frozen=True)
class TensorMeta:
    """Directory entry of one tensor: safetensors dtype name, shape and size in bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


class SafetensorsFile:
    """One ``.safetensors`` file, memory-mapped."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise UnsupportedSourceError(f"{self.path}: too short to be a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > min(_MAX_HEADER, size - 8):
                raise UnsupportedSourceError(f"{self.path}: bad safetensors header length {n}")
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise UnsupportedSourceError(f"{self.path}: unreadable safetensors header ({exc})") from exc
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._start = 8 + n
        self._entries: dict[str, tuple[TensorMeta, int]] = {}
        for name, entry in header.items():
            self._entries[name] = self._entry(name, entry, size)
        self._map: np.memmap | None = None

    def _entry(self, name: str, entry: dict, size: int) -> tuple[TensorMeta, int]:
        try:
            dtype, shape = str(entry["dtype"]), tuple(int(d) for d in entry["shape"])
            begin, end = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UnsupportedSourceError(f"{self.path}: malformed entry for tensor {name!r}") from exc
        if dtype not in _NP_DTYPES:
            raise UnsupportedSourceError(f"{self.path}: tensor {name!r} has unsupported dtype {dtype}")
        nbytes = math.prod(shape) * np.dtype(_NP_DTYPES[dtype]).itemsize
        if end - begin != nbytes or begin < 0 or self._start + end > size:
            raise UnsupportedSourceError(f"{self.path}: tensor {name!r} data is out of bounds or mis-sized")
        return TensorMeta(name, dtype, shape, nbytes), self._start + begin

    def keys(self) -> list[str]:
        return list(self._entries)

    def meta(self, name: str) -> TensorMeta:
        return self._entries[name][0]

    def raw(self, name: str) -> np.ndarray:
        """A read-only view of the tensor in its stored dtype (BF16 as ``uint16``)."""
        meta, offset = self._entries[name]
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        data = self._map[offset : offset + meta.nbytes]
        return np.ndarray(meta.shape, dtype=_NP_DTYPES[meta.dtype], buffer=data)

    def float32(self, name: str) -> np.ndarray:
        """The tensor converted to float32 (a new array)."""
        meta = self.meta(name)
        raw = self.raw(name)
        if meta.dtype == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)

    def close(self) -> None:
        self._map = None


class ShardedSafetensors:
    """The tensors of a checkpoint spread over several files (``model.safetensors.index.json``)
    or held in one; names map to the file holding them."""

    def __init__(self, files: list[Path]) -> None:
        self.files = [SafetensorsFile(p) for p in files]
        self._where: dict[str, SafetensorsFile] = {}
        for f in self.files:
            for name in f.keys():
                if name in self._where:
                    raise UnsupportedSourceError(f"tensor {name!r} appears in two shards")
                self._where[name] = f

    @classmethod
    def from_dir(cls, folder: Path) -> ShardedSafetensors | None:
        """The checkpoint's safetensors: the index's shards, else every ``*.safetensors``."""
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            shards = sorted({folder / str(f) for f in weight_map.values()})
            missing = [p.name for p in shards if not p.is_file()]
            if missing:
                raise UnsupportedSourceError(f"{index} lists missing shards: {missing}")
            return cls(shards)
        files = sorted(folder.glob("*.safetensors"))
        return cls(files) if files else None

    @property
    def nbytes_on_disk(self) -> int:
        return sum(f.path.stat().st_size for f in self.files)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def meta(self, name: str) -> TensorMeta:
        return self._where[name].meta(name)

    def raw(self, name: str) -> np.ndarray:
        return self._where[name].raw(name)

    def float32(self, name: str) -> np.ndarray:
        return self._where[name].float32(name)

    def close(self) -> None:
        for f in self.files:
            f.close()
