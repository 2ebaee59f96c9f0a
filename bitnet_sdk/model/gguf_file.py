"""Reading BitNet b1.58 GGUF model files.

``read_model(path)`` maps the file into memory (``gguf.GGUFReader``; weights are
never read until asked for) and returns a :class:`ModelFile`: raw metadata, the
tensor directory and tensors on demand. Hyper-parameters and the vocabulary are
read from it by ``ModelConfig.from_model_file`` (``config.py``) and
``TokenizerSpec.from_metadata`` (``tokenizer.py``), which build on this module.

Files we read
-------------
* llama.cpp's ``bitnet`` architecture (``LLM_ARCH_BITNET``): ternary projections
  in TQ1_0 / TQ2_0, or F32 / F16 / BF16 tensors that hold ternary values times a
  scale (what ``convert_hf_to_gguf.py`` writes), optionally with one-element
  ``blk.N.<proj>.scale`` tensors that multiply the projection's output; the
  output head is tied to ``token_embd``.
* bitnet.cpp's architectures ``bitnet-b1.58`` and ``bitnet-25`` with its I2_S
  type. bitnet.cpp's ggml fork gives I2_S the type id 36, a number upstream
  ggml never assigned to I2_S, so ``gguf.GGUFReader`` cannot size those
  tensors. We keep GGUFReader for what it does well (header, key/values,
  tensor-info records, the memory map) and size tensors ourselves from
  :data:`TYPE_SIZES`; see ``_CheckedReader``.

Corrupt files
-------------
GGUFReader trusts the file: a short read silently yields a short array and a
huge array length makes it loop for a very long time. ``_CheckedReader``
bounds-checks every read and every array length against the file size, so a
damaged header fails fast with :class:`GGUFFormatError` (``code`` says what).
Layout problems in the tensor data area (data past the end of the file,
overlaps, unknown types, trailing bytes) are listed by :func:`layout_problems`;
``read_model(strict=True)`` raises on the first of them.
"""

from __future__ import annotations

import errno
import itertools
import logging
import math
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf.quants import dequantize

from bitnet_sdk import formats
from bitnet_sdk.formats.constants import (
    ARCH_BITNET,
    ARCH_BITNET_25,
    ARCH_BITNET_B158,
    BITNET_ARCHITECTURES,
    I2_S_TYPE_ID,
)
from bitnet_sdk.ternary import TernaryTensor
from bitnet_sdk.ternary import dequantize as dequantize_ternary

__all__ = [
    "ARCH_BITNET",
    "ARCH_BITNET_25",
    "ARCH_BITNET_B158",
    "GGML_TYPE_I2_S",
    "SUPPORTED_ARCHS",
    "TERNARY_TYPES",
    "TYPE_SIZES",
    "GGUFFormatError",
    "Metadata",
    "ModelFile",
    "NotTernaryError",
    "Problem",
    "StringArray",
    "TensorInfo",
    "layout_problems",
    "read_model",
    "type_name",
]

logger = logging.getLogger(__name__)

SUPPORTED_ARCHS = BITNET_ARCHITECTURES
GGML_TYPE_I2_S = I2_S_TYPE_ID

#: (block size in weights, bytes per block) for every type we can size.
TYPE_SIZES: dict[int, tuple[int, int]] = {int(t): s for t, s in GGML_QUANT_SIZES.items()}
TERNARY_TYPES = frozenset(formats.QTYPE_IDS.values())
_FLOAT_TYPES = {
    int(GGMLQuantizationType.F32): np.float32,
    int(GGMLQuantizationType.F16): np.float16,
}
_BF16 = int(GGMLQuantizationType.BF16)

#: The projections BitNet runs as ternary matmuls; other tensors are float.
TERNARY_PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")

_HEADER = struct.Struct("<IIQQ")  # magic, version, tensor_count, kv_count
_U64 = struct.Struct("<Q")
_SUPPORTED_VERSIONS = (2, 3)


def type_name(ggml_type: int) -> str:
    """Human name of a ggml type id (``TQ2_0``, ``I2_S``, ``type_99`` if unknown)."""
    fmt = formats.by_type_id(ggml_type)
    if fmt is not None:
        return fmt.label
    try:
        return GGMLQuantizationType(ggml_type).name
    except ValueError:
        return f"type_{ggml_type}"


class GGUFFormatError(ValueError):
    """The file is not a readable GGUF file; ``code`` names the problem."""

    def __init__(self, code: str, message: str, tensor: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.tensor = tensor


class NotTernaryError(ValueError):
    """A projection tensor does not hold ternary values with one scale per row."""

    def __init__(self, tensor: str, message: str) -> None:
        super().__init__(f"{tensor}: {message}")
        self.tensor = tensor


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a model file. ``code`` is stable; ``message`` is for people."""

    code: str
    message: str
    tensor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "tensor": self.tensor}


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives in the file.

    ``shape`` is in numpy order (GGUF stores it reversed): a projection is
    ``(rows, cols) = (out_features, in_features)``. ``offset`` is absolute in
    the file. ``n_bytes`` is ``None`` when the type is unknown.
    """

    name: str
    ggml_type: int
    shape: tuple[int, ...]
    offset: int
    n_bytes: int | None

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def is_ternary_type(self) -> bool:
        return self.ggml_type in TERNARY_TYPES


def tensor_nbytes(ggml_type: int, shape: tuple[int, ...]) -> int | None:
    """Bytes a tensor of this type and shape occupies, ``None`` if not computable."""
    n = math.prod(shape)
    fmt = formats.by_type_id(ggml_type)
    if fmt is not None and fmt.per_tensor_scale:  # one scale per matrix: I2_S is 2-D only
        return fmt.tensor_nbytes(shape) if len(shape) == 2 else None
    sizes = TYPE_SIZES.get(ggml_type)
    if sizes is None or not shape:
        return None
    block, type_size = sizes
    if shape[-1] % block:
        return None
    return n // block * type_size


# -- metadata arrays, read in place ----------------------------------------------

class StringArray(Sequence[str]):
    """A GGUF array of strings, read in place: each string is decoded when it is asked for.

    :meth:`walk` follows the length prefixes once (every length checked against the
    file) and checks that every string is UTF-8; it keeps only two offset arrays, so a
    128k-token vocabulary costs 2 MB instead of 128k Python objects (20+ MB, 0.1 s).
    """

    __slots__ = ("_buf", "_data", "_ends", "_starts", "nbytes")

    def __init__(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray, nbytes: int) -> None:
        self._data, self._starts, self._ends = data, starts, ends
        # slices of a memoryview cost ~0.1 µs; of a numpy memmap, ~10 µs (a subclass view each)
        self._buf = memoryview(data)  # type: ignore[arg-type]  # numpy's stubs lack memmap's buffer protocol
        #: Bytes the array occupies in the file (length prefixes included).
        self.nbytes = nbytes

    @classmethod
    def walk(cls, data: np.ndarray, offset: int, length: int) -> StringArray:
        """The ``length`` strings stored from ``offset`` of ``data`` (uint8); raises
        :class:`GGUFFormatError` when one runs past the end or is not UTF-8."""
        buf = memoryview(data)  # type: ignore[arg-type]  # numpy's stubs lack memmap's buffer protocol
        end, first = len(buf), offset
        starts = np.empty(length, dtype=np.int64)
        unpack = _U64.unpack_from
        for i in range(length):
            if offset + 8 > end:
                raise GGUFFormatError("truncated_header", f"string at byte {offset} runs past the end of the file")
            (n,) = unpack(buf, offset)
            offset += 8
            if n > end - offset:
                raise GGUFFormatError("truncated_header", f"string of {n} bytes at byte {offset} runs past the end of the file")
            starts[i] = offset
            offset += n
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:] - 8
        if length:
            ends[-1] = offset
        strings = cls(data, starts, ends, offset - first)
        strings._check_utf8()
        return strings

    def _check_utf8(self) -> None:
        """Every string is UTF-8: their concatenation decodes and no string starts with a
        continuation byte (so no character spans two strings)."""
        if not len(self):
            return
        lengths = self._ends - self._starts
        base = int(self._starts[0]) - 8
        keep = np.ones(int(self._ends[-1]) - base, dtype=bool)
        keep[(self._starts - 8 - base)[:, None] + np.arange(8)] = False  # the length prefixes
        blob = np.asarray(self._data[base : int(self._ends[-1])])[keep]
        try:
            blob.tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFFormatError("bad_header", f"malformed header: a string is not UTF-8 ({exc.reason})") from None
        firsts = (np.cumsum(lengths) - lengths)[lengths > 0]
        if np.any((blob[firsts] & 0xC0) == 0x80):
            raise GGUFFormatError("bad_header", "malformed header: a string is not UTF-8 (starts inside a character)")

    def __len__(self) -> int:
        return int(self._starts.shape[0])

    def raw(self, index: int) -> bytes:
        """The undecoded bytes of string ``index``."""
        return self._buf[self._starts[index] : self._ends[index]].tobytes()

    def byte_lengths(self) -> np.ndarray:
        """Length in bytes of every string (int64)."""
        return self._ends - self._starts

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.raw(index).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        buf = self._buf
        for s, e in zip(self._starts.tolist(), self._ends.tolist(), strict=True):
            yield str(buf[s:e], "utf-8")

    def tolist(self) -> list[str]:
        """Every string, decoded."""
        return list(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (StringArray, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking sequence, like list

    def __repr__(self) -> str:
        return f"<StringArray of {len(self)} strings>"


class Metadata(Mapping[str, Any]):
    """A GGUF file's key/values: scalars as Python values, arrays as lists built on first
    access (a 128k-token vocabulary is never decoded unless asked for).

    :meth:`array` gives an array undecoded: a :class:`StringArray`, or a read-only numpy
    view of the mapped file for numbers.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        self._lists: dict[str, list[Any]] = {}

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        if not isinstance(value, (StringArray, np.ndarray)):
            return value
        out = self._lists.get(key)
        if out is None:  # two threads may both build it: the same list, harmlessly
            out = self._lists[key] = value.tolist()
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def array(self, key: str) -> Any:
        """The value of ``key`` with arrays undecoded (``StringArray`` / numpy), or None."""
        return self._values.get(key)


def metadata_array(metadata: Mapping[str, Any], key: str) -> Any:
    """``metadata[key]`` without decoding arrays when ``metadata`` is a :class:`Metadata`
    (a plain mapping's value is returned as it is); None when missing."""
    return metadata.array(key) if isinstance(metadata, Metadata) else metadata.get(key)


# -- the bounds-checked GGUFReader --------------------------------------------

_SCALAR_SIZES = {
    int(t): np.dtype(d).itemsize for t, d in GGUFReader.gguf_scalar_to_np.items()
}
_MIN_ITEM_SIZE = {**_SCALAR_SIZES, int(GGUFValueType.STRING): 8, int(GGUFValueType.ARRAY): 12}


class _CheckedReader(GGUFReader):
    """GGUFReader that refuses to read past the end of the file.

    Overrides three internal helpers of gguf-py (stable since gguf 0.6):
    ``_get`` (every read is bounds-checked), ``_get_field_parts`` (array
    lengths are checked against the bytes left, and arrays of numbers or
    strings are read in place, undecoded: a numpy view or a :class:`StringArray`,
    instead of one numpy view per element) and
    ``_build_tensors`` (tensor-info records are kept raw and sized
    by ``ModelFile``, because gguf-py does not know I2_S).
    """

    tensor_fields: list[Any]

    def _get(self, offset: int, dtype: Any, count: int = 1, override_order: Any = None) -> Any:
        count = int(count)
        end = int(offset) + np.dtype(dtype).itemsize * count
        if offset < 0 or count < 0 or end > len(self.data):
            raise GGUFFormatError(
                "truncated_header", f"header read of {count} x {np.dtype(dtype)} at byte {offset} runs past the end of the file"
            )
        return super()._get(offset, dtype, count, override_order)

    def _get_field_parts(self, orig_offs: int, raw_type: int) -> Any:
        if raw_type != GGUFValueType.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        raw_itype = self._get(orig_offs, np.uint32)
        raw_len = self._get(orig_offs + 4, np.uint64)
        item_type, length = int(raw_itype[0]), int(raw_len[0])
        if item_type not in _MIN_ITEM_SIZE:
            raise GGUFFormatError("bad_header", f"array of unknown value type {item_type} at byte {orig_offs}")
        start = orig_offs + 12
        if length * _MIN_ITEM_SIZE[item_type] > len(self.data) - start:
            raise GGUFFormatError("truncated_header", f"array of {length} items at byte {orig_offs} is longer than the file")
        types = [GGUFValueType.ARRAY, GGUFValueType(item_type)]
        nptype = self.gguf_scalar_to_np.get(GGUFValueType(item_type))
        # One part holding the whole array, undecoded (``_field_value`` reads it; gguf-py makes
        # one numpy view per element, which takes seconds for a 128k-token vocabulary).
        if nptype is not None:
            values = self._get(start, nptype, length)
            return 12 + int(values.nbytes), [raw_itype, raw_len, values], [2], types
        if item_type == GGUFValueType.STRING:
            strings = StringArray.walk(self.data, start, length)
            return 12 + strings.nbytes, [raw_itype, raw_len, strings], [2], types
        return super()._get_field_parts(orig_offs, raw_type)  # arrays of arrays: rare, element-wise

    def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
        self.tensor_fields = fields
        self.tensors = []


def _check_preamble(path: Path, size: int) -> None:
    """Magic, version, byte order and plausible counts, before mapping the file."""
    if size < _HEADER.size:
        raise GGUFFormatError("truncated_header", f"file is {size} bytes, shorter than a GGUF header")
    with open(path, "rb") as f:
        magic, version, n_tensors, n_kv = _HEADER.unpack(f.read(_HEADER.size))
    if magic != GGUF_MAGIC:
        raise GGUFFormatError("bad_magic", f"not a GGUF file (magic {magic:#010x}, expected {GGUF_MAGIC:#010x})")
    if version & 0xFFFF == 0 and version != 0:
        raise GGUFFormatError("big_endian", "big-endian GGUF files are not supported")
    if version not in _SUPPORTED_VERSIONS:
        raise GGUFFormatError("unsupported_version", f"GGUF version {version} is not supported (2 or 3)")
    # every key/value takes at least 12 bytes, every tensor info at least 24
    if n_kv * 12 + n_tensors * 24 > size - _HEADER.size:
        raise GGUFFormatError(
            "truncated_header", f"header claims {n_kv} keys and {n_tensors} tensors, more than the file can hold"
        )


def _field_value(field: Any) -> Any:
    """A ReaderField as a plain Python value (str, int, float, bool, list), or an array read in
    place (:class:`StringArray`, numpy view) when ``_CheckedReader`` read it in one part."""
    if len(field.types) == 2 and field.types[0] == GGUFValueType.ARRAY and len(field.data) == 1:
        part = field.parts[field.data[0]]
        if isinstance(part, (StringArray, np.ndarray)):
            return part
    value = field.contents()
    if field.types and field.types[0] == GGUFValueType.ARRAY and not isinstance(value, list):
        value = [value]
    return value


# -- ternary conversion helpers -------------------------------------------------

def ternarize_rows(w: np.ndarray, name: str) -> TernaryTensor:
    """Exact conversion of a float matrix whose rows hold ``{-s_r, 0, s_r}``.

    Raises :class:`NotTernaryError` naming the first offending row when a row
    has two different magnitudes (or a NaN/inf), so nothing is silently
    re-quantized.
    """
    w = np.asarray(w, dtype=np.float32)
    absw = np.abs(w)
    rowmax = absw.max(axis=1)
    bad = ~(((absw == rowmax[:, None]) | (w == 0)).all(axis=1) & np.isfinite(rowmax))
    if bad.any():
        r = int(np.argmax(bad))
        vals = np.unique(absw[r][absw[r] != 0])[:4]
        raise NotTernaryError(name, f"row {r} holds magnitudes {vals.tolist()}; not ternary with one scale per row")
    q = np.sign(w).astype(np.int8)
    return TernaryTensor(q, rowmax.astype(np.float32))


# -- the model file ---------------------------------------------------------------

class ModelFile:
    """An opened GGUF model: metadata, tensor directory and tensors on demand.

    Build with :func:`read_model`. Tensors are read from the memory map only
    when asked for; converted tensors (ternary unpacking, F16 → F32) are cached
    so each is converted once, and memory-map views are returned as they are.
    """

    def __init__(self, path: Path, reader: _CheckedReader, size: int) -> None:
        self.path = path
        self.file_size = size
        self._reader = reader
        self.metadata = Metadata({
            name: _field_value(field) for name, field in reader.fields.items() if not name.startswith("GGUF.")
        })
        self.version = int(reader.fields["GGUF.version"].parts[0][0])
        self.alignment = int(reader.alignment)
        self.data_offset = int(reader.data_offset)
        self.tensors: dict[str, TensorInfo] = {}
        for field in reader.tensor_fields:
            info = self._tensor_info_from_field(field)
            if info.name in self.tensors:
                raise GGUFFormatError("duplicate_tensor", f"tensor {info.name!r} appears twice", info.name)
            self.tensors[info.name] = info
        self._cache: dict[str, TernaryTensor | np.ndarray] = {}

    def _tensor_info_from_field(self, field: Any) -> TensorInfo:
        _len, name_data, _n_dims, dims, raw_type, rel_offset = field.parts
        name = bytes(name_data).decode("utf-8")
        shape = tuple(int(d) for d in reversed(dims.tolist()))
        ggml_type = int(raw_type[0])
        n_bytes = tensor_nbytes(ggml_type, shape) if all(d > 0 for d in shape) else None
        return TensorInfo(name, ggml_type, shape, self.data_offset + int(rel_offset[0]), n_bytes)

    def __repr__(self) -> str:
        return f"<ModelFile {self.path.name} arch={self.metadata.get('general.architecture')!r} tensors={len(self.tensors)}>"

    def __enter__(self) -> ModelFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop converted tensors kept in the cache (views handed out stay valid)."""
        self._cache.clear()

    # -- metadata ------------------------------------------------------------

    @property
    def arch(self) -> str:
        """``general.architecture`` (empty string when missing)."""
        value = self.metadata.get("general.architecture", "")
        return value if isinstance(value, str) else ""

    def arch_key(self, template: str) -> Any:
        """Value of an architecture key such as ``gguf.Keys.LLM.CONTEXT_LENGTH``, or None."""
        return self.metadata.get(template.format(arch=self.arch))

    # -- tensors -------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def tensor_info(self, name: str) -> TensorInfo:
        """Directory entry of ``name``; ``KeyError`` if the file has no such tensor."""
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path.name} has no tensor {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 view of the memory map."""
        info = self.tensor_info(name)
        if info.n_bytes is None:
            raise GGUFFormatError("unknown_tensor_type", f"cannot size {info.type_name} tensor {name!r}", name)
        end = info.offset + info.n_bytes
        if end > self.file_size:
            raise GGUFFormatError("tensor_out_of_bounds", f"tensor {name!r} runs past the end of the file", name)
        return self._reader.data[info.offset : end]

    def is_projection(self, name: str) -> bool:
        """True for the ternary linear layers (``blk.N.attn_q.weight`` ...)."""
        parts = name.split(".")
        return len(parts) == 4 and parts[0] == "blk" and parts[2] in TERNARY_PROJECTIONS and parts[3] == "weight"

    def tensor(self, name: str, *, cache: bool = True) -> TernaryTensor | np.ndarray:
        """A projection as :class:`TernaryTensor`, anything else as float32.

        Projections stored as F32/F16/BF16 must hold ternary values with one
        scale per row (else :class:`NotTernaryError`); a ``<name>.scale``
        tensor, when present, multiplies the scale (llama.cpp's ``wq_s``...).
        Float tensors stored as F32 come back as a read-only view of the file.
        """
        if name in self._cache:
            return self._cache[name]
        info = self.tensor_info(name)
        value: TernaryTensor | np.ndarray
        if self.is_projection(name) or (info.is_ternary_type and len(info.shape) == 2):
            value = self.ternary(name)
        else:
            value = self.float_tensor(name)
        if cache and info.ggml_type != int(GGMLQuantizationType.F32):
            self._cache[name] = value  # F32 data is a view of the map: nothing to keep
        return value

    def ternary(self, name: str) -> TernaryTensor:
        """Unpack a 2-D ternary tensor (TQ1_0, TQ2_0, I2_S or ternary floats)."""
        info = self.tensor_info(name)
        if len(info.shape) != 2:
            raise NotTernaryError(name, f"expected a 2-D tensor, shape is {info.shape}")
        raw = self.raw(name)
        if info.is_ternary_type:
            try:
                t = formats.unpack(info.ggml_type, raw, info.shape)
            except ValueError as exc:
                raise NotTernaryError(name, str(exc)) from exc
        else:
            t = ternarize_rows(self._dequantize(info, raw), name)
        scale_name = name[: -len(".weight")] + ".scale" if name.endswith(".weight") else None
        if scale_name and scale_name in self.tensors:
            s = self.float_tensor(scale_name).reshape(-1)
            if s.size not in (1, info.shape[0]):
                raise NotTernaryError(name, f"{scale_name} has {s.size} values, expected 1 or {info.shape[0]}")
            t = TernaryTensor(t.q, (t.scale * s.astype(np.float32)).astype(np.float32))
        return t

    def float_tensor(self, name: str) -> np.ndarray:
        """The tensor as float32 in numpy shape; a zero-copy view when stored as F32."""
        info = self.tensor_info(name)
        if info.ggml_type == GGML_TYPE_I2_S:
            return dequantize_ternary(self.ternary(name))
        return self._dequantize(info, self.raw(name))

    @staticmethod
    def _dequantize(info: TensorInfo, raw: np.ndarray) -> np.ndarray:
        if info.ggml_type == int(GGMLQuantizationType.F32):
            return raw.view(np.float32).reshape(info.shape)
        if info.ggml_type in _FLOAT_TYPES:
            return raw.view(_FLOAT_TYPES[info.ggml_type]).astype(np.float32).reshape(info.shape)
        if info.ggml_type == _BF16:
            return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(info.shape)
        rows = info.n_elements // info.shape[-1]
        try:
            out = dequantize(raw.reshape(rows, -1), GGMLQuantizationType(info.ggml_type))
        except (NotImplementedError, ValueError) as exc:
            raise ValueError(f"{info.name}: cannot decode {info.type_name} data as float ({exc})") from exc
        return np.asarray(out, dtype=np.float32).reshape(info.shape)


def layout_problems(mf: ModelFile) -> list[Problem]:
    """Problems in the tensor data area: unknown types, bounds, overlaps, trailing bytes."""
    problems: list[Problem] = []
    spans: list[tuple[int, int, str]] = []
    for info in mf.tensors.values():
        if info.n_bytes is None:
            if info.ggml_type in TYPE_SIZES or info.ggml_type == GGML_TYPE_I2_S:
                problems.append(Problem("tensor_shape", f"{info.type_name} cannot hold a tensor of shape {info.shape}", info.name))
            else:
                problems.append(Problem("unknown_tensor_type", f"tensor type id {info.ggml_type} is unknown", info.name))
            continue
        if (info.offset - mf.data_offset) % mf.alignment:
            problems.append(Problem("tensor_misaligned", f"data offset {info.offset} is not a multiple of {mf.alignment}", info.name))
        end = info.offset + info.n_bytes
        if end > mf.file_size:
            problems.append(Problem(
                "tensor_out_of_bounds",
                f"data [{info.offset}, {end}) runs {end - mf.file_size} bytes past the end of the file ({mf.file_size} bytes)",
                info.name,
            ))
        spans.append((info.offset, end, info.name))
    spans.sort()
    for (_s0, e0, n0), (s1, _e1, n1) in itertools.pairwise(spans):
        if s1 < e0:
            problems.append(Problem("tensor_overlap", f"data overlaps tensor {n0!r}", n1))
    data_end = max((e for _s, e, _n in spans), default=mf.data_offset)
    padded_end = data_end + (-data_end) % mf.alignment
    if mf.file_size > padded_end and not any(p.code == "unknown_tensor_type" for p in problems):
        problems.append(Problem("trailing_data", f"{mf.file_size - data_end} bytes after the last tensor's data"))
    return problems


def read_model(path: str | os.PathLike[str], *, strict: bool = True) -> ModelFile:
    """Open a GGUF model file (memory-mapped).

    Raises ``FileNotFoundError`` / ``IsADirectoryError`` / ``PermissionError``
    for files that cannot be opened and :class:`GGUFFormatError` for anything
    malformed in the header. With ``strict`` (the default) layout problems
    (:func:`layout_problems`) raise too; ``strict=False`` leaves them to the
    caller (``validate`` reports them all).
    """
    path = Path(path)
    size = path.stat().st_size
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    _check_preamble(path, size)
    try:
        reader = _CheckedReader(path, "r")
        mf = ModelFile(path, reader, size)
    except GGUFFormatError:
        raise
    except KeyError as exc:  # gguf-py raises KeyError for duplicate keys
        raise GGUFFormatError("duplicate_key", f"malformed header: {exc}") from exc
    except RecursionError:  # arrays nested thousands deep
        raise GGUFFormatError("bad_header", "malformed header: arrays nested too deeply") from None
    except (ValueError, IndexError, UnicodeDecodeError, OverflowError, TypeError, struct.error) as exc:
        raise GGUFFormatError("bad_header", f"malformed header: {exc}") from exc
    if strict:
        problems = layout_problems(mf)
        if problems:
            p = problems[0]
            raise GGUFFormatError(p.code, f"{p.tensor + ': ' if p.tensor else ''}{p.message}", p.tensor)
    return mf
