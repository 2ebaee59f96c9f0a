"""The packed ternary weight layout the kernels read, and the padded activation buffers.

Weights (repacked once at load from a ``TernaryTensor``):

* each weight is stored as ``u = q + 1 ∈ {0, 1, 2}`` in 2 bits, so that it can
  be the *unsigned* operand of ``vpdpbusd``/``vpmaddubsw``; the kernels
  subtract ``Σ x`` per token afterwards (``Σ (q+1)·x − Σ x = Σ q·x``, exact in
  wrapping int32 arithmetic);
* ``k`` is split into blocks of 256; block ``b`` of a row is 64 bytes, byte
  ``j`` holding the weights at ``256b + j + 64s`` in bits ``2s..2s+1``
  (``s = 0..3``). One load of 16/32/64 bytes followed by a shift by ``2s`` and
  a mask of 3 gives 16/32/64 *consecutive* weights, which meet a plain
  contiguous load of activations: one layout serves NEON, AVX2 and AVX-512;
* rows come in groups of 4: the 4 rows' blocks ``b`` are adjacent
  (``[row_group][block][row_in_group][64 bytes]``), so a 4-row register tile
  reads one sequential stream;
* ``k`` is padded to a multiple of 256 and rows to a multiple of 4 with
  ``q = 0``; padded activations are zero, so padding adds nothing.

Buffers are 64-byte aligned so vector loads never split cache lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ml_dtypes
import numpy as np

__all__ = [
    "BLOCK",
    "BLOCK_BYTES",
    "HEAD_KINDS",
    "ROW_GROUP",
    "HeadMatrix",
    "PackedTernary",
    "aligned_empty",
    "aligned_zeros",
    "pack_ternary",
    "padded",
    "unpack_ternary",
]

#: Weights per block along ``k``.
BLOCK = 256
#: Bytes of one row's block.
BLOCK_BYTES = BLOCK // 4
#: Rows interleaved block by block.
ROW_GROUP = 4
_ALIGN = 64


def padded(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, -(-n // multiple) * multiple)


def aligned_empty(shape: tuple[int, ...] | int, dtype: np.dtype | type, align: int = _ALIGN) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start : start + nbytes].view(dt).reshape(shape)


def aligned_zeros(shape: tuple[int, ...] | int, dtype: np.dtype | type, align: int = _ALIGN) -> np.ndarray:
    out = aligned_empty(shape, dtype, align)
    out.fill(0)
    return out


@dataclass(frozen=True)
class PackedTernary:
    """A ternary matrix in the kernels' layout (see the module docstring).

    ``data`` is uint8 of ``rows_padded * cols_padded / 4`` bytes; ``scale`` is
    float32 of ``rows_padded`` entries (the padding rows have scale 0).
    ``shape`` is the logical ``(rows, cols)``.
    """

    data: np.ndarray = field(repr=False)
    scale: np.ndarray = field(repr=False)
    shape: tuple[int, int]
    #: ``(data, scale)`` addresses, looked up once (numpy's lookup costs microseconds per call).
    pointers: tuple[int, int] = field(init=False, repr=False, compare=False)
    #: ``(rows_padded, cols_padded)``, computed once: every matmul call reads them.
    _padded: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rp, kp = padded(self.shape[0], ROW_GROUP), padded(self.shape[1], BLOCK)
        object.__setattr__(self, "_padded", (rp, kp))
        if self.data.dtype != np.uint8 or self.data.shape != (rp * kp // 4,) or not self.data.flags.c_contiguous:
            raise ValueError(f"data must be contiguous uint8 of {rp * kp // 4} bytes for shape {self.shape}")
        if self.scale.dtype != np.float32 or self.scale.shape != (rp,) or not self.scale.flags.c_contiguous:
            raise ValueError(f"scale must be contiguous float32 of {rp} entries for shape {self.shape}")
        ptrs = (self.data.__array_interface__["data"][0], self.scale.__array_interface__["data"][0])
        object.__setattr__(self, "pointers", ptrs)

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[1]

    @property
    def rows_padded(self) -> int:
        return self._padded[0]

    @property
    def cols_padded(self) -> int:
        return self._padded[1]

    @property
    def nblocks(self) -> int:
        return self._padded[1] // BLOCK

    @property
    def nbytes(self) -> int:
        """Bytes of packed weights a full matmul reads."""
        return int(self.data.nbytes)


#: Element types an output head may be kept in, by numpy dtype (BF16 as ``ml_dtypes.bfloat16``).
HEAD_KINDS = {np.dtype(np.float16): "f16", np.dtype(ml_dtypes.bfloat16): "bf16", np.dtype(np.float32): "f32",
              np.dtype(np.int8): "i8"}  # fmt: skip


@dataclass(frozen=True)
class HeadMatrix:
    """The output head ``[rows, cols]`` as the head kernels read it.

    ``data`` is contiguous float16/bfloat16/float32 (the file's bytes, usually a view
    of the memory map: never copied) or int8 with ``scale`` float32 ``[rows]``
    (quantized per row, ``w ≈ data * scale``). ``kind`` names the kernel.
    """

    data: np.ndarray = field(repr=False)
    scale: np.ndarray | None = field(repr=False)
    kind: str
    pointers: tuple[int, int | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.data.ndim != 2 or not self.data.flags.c_contiguous:
            raise ValueError("head data must be a contiguous 2-D array")
        if HEAD_KINDS.get(self.data.dtype) != self.kind:
            raise ValueError(f"head data of dtype {self.data.dtype} does not hold kind {self.kind!r}")
        if (self.kind == "i8") != (self.scale is not None):
            raise ValueError("an int8 head needs per-row scales, and only an int8 head has them")
        if self.scale is not None and (self.scale.dtype != np.float32 or self.scale.shape != self.data.shape[:1]):
            raise ValueError(f"scale must be float32 of {self.data.shape[0]} entries")
        ptrs = (self.data.__array_interface__["data"][0],
                None if self.scale is None else self.scale.__array_interface__["data"][0])  # fmt: skip
        object.__setattr__(self, "pointers", ptrs)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.data.shape[0]), int(self.data.shape[1]))

    @property
    def nbytes(self) -> int:
        """Bytes one pass over the head reads."""
        return int(self.data.nbytes) + (0 if self.scale is None else int(self.scale.nbytes))


def pack_ternary(q: np.ndarray, scale: np.ndarray) -> PackedTernary:
    """Repack int8 ``q [rows, cols]`` (values in {-1, 0, 1}) and float32 ``scale [rows]``.

    Raises ``ValueError`` for values outside {-1, 0, 1}: they have no 2-bit code.
    """
    q = np.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"q must be 2-D, got shape {q.shape}")
    rows, cols = q.shape
    if rows == 0 or cols == 0:
        raise ValueError(f"cannot pack an empty matrix of shape {q.shape}")
    if q.size and (int(q.min()) < -1 or int(q.max()) > 1):
        raise ValueError("q holds values outside {-1, 0, 1}")
    rp, kp = padded(rows, ROW_GROUP), padded(cols, BLOCK)
    u = np.ones((rp, kp), dtype=np.uint8)
    u[:rows, :cols] = (q + 1).astype(np.uint8)
    # [group, row_in_group, block, s, j] -> [group, block, row_in_group, s, j]
    u = u.reshape(rp // ROW_GROUP, ROW_GROUP, kp // BLOCK, 4, BLOCK_BYTES).transpose(0, 2, 1, 3, 4)
    packed = u[..., 0, :] | (u[..., 1, :] << 2) | (u[..., 2, :] << 4) | (u[..., 3, :] << 6)
    data = aligned_empty(packed.size, np.uint8)
    data[:] = packed.reshape(-1)
    sc = aligned_zeros(rp, np.float32)
    sc[:rows] = np.asarray(scale, dtype=np.float32).reshape(rows)
    return PackedTernary(data, sc, (rows, cols))


def unpack_ternary(p: PackedTernary) -> np.ndarray:
    """The int8 ``q [rows, cols]`` a packed matrix holds (inverse of ``pack_ternary``)."""
    rp, kp = p.rows_padded, p.cols_padded
    b = p.data.reshape(rp // ROW_GROUP, kp // BLOCK, ROW_GROUP, BLOCK_BYTES)
    u = np.stack([(b >> (2 * s)) & 3 for s in range(4)], axis=3)  # [g, blk, r, s, j]
    u = u.transpose(0, 2, 1, 3, 4).reshape(rp, kp)
    return (u.astype(np.int8) - 1)[: p.rows, : p.cols]
