"""Ternary weights in MLX's 2-bit affine layout: packed once at load, never expanded.

Layout (``PackedTernary``)
--------------------------
``packed`` is ``uint32 [rows, cols_padded / 16]``: weight ``q[r, k]`` is stored
as the 2-bit code ``c = q + 1`` (0, 1 or 2) at bits ``2 * (k % 16)`` of word
``k // 16`` (lowest bits first). That is exactly MLX's ``bits=2`` affine
quantization layout, so ``mx.quantized_matmul`` / ``mx.dequantize`` read it
directly with one scale and one bias per ``group_size`` codes. We set every
scale to ``1.0`` and every bias to ``-1.0``, so the dequantized value is
``1 * c - 1 = q`` *exactly*: the MLX kernels compute integer dot products of
int8-valued activations with ternary weights (see ``kernels`` for why float32
accumulation is exact), and the tensor's own scale (``row_scale``) is applied
afterwards, like the reference's ``acc * scale / a``.

Columns are padded up to a multiple of 32 (MLX's smallest group) with code 1
(weight 0); the activations are padded with zeros at call time, so padding
never contributes. Cost: 2 bits per weight plus two float32 (scale, bias) per
group of 128 codes when ``cols % 128 == 0`` (0.5 bit per weight; 1 or 2 bits
for groups of 64 or 32). Float32 scales keep the kernels on the dtype of the
activations, which avoids a per-call cast.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from bitnet_sdk.ternary import TernaryTensor

__all__ = [
    "CODES_PER_WORD",
    "MAX_COLS",
    "PAD_MULTIPLE",
    "PackedTernary",
    "group_size_for",
    "pack_codes",
    "pack_ternary",
    "unpack_codes",
]

#: 2-bit codes per uint32 word.
CODES_PER_WORD = 16
#: Columns are padded to a multiple of MLX's smallest quantization group.
PAD_MULTIPLE = 32
#: Group sizes MLX supports for 2-bit codes, largest (cheapest) first.
_GROUP_SIZES = (128, 64, 32)
#: ``128 * cols`` must fit int32 for the exact accumulation (``|acc| <= 128 * cols``).
MAX_COLS = 2**24
#: Rows packed per numpy pass at load, to bound the temporary (16 bytes per weight).
_ROW_BLOCK = 1024


@dataclass(frozen=True, eq=False)
class PackedTernary:
    """A ternary matrix prepared by the MLX backend; opaque to the runtime.

    ``shape`` is the logical ``(rows, cols)``; ``cols_padded`` the padded width
    the packed arrays cover; ``device`` the backend device it was prepared for.
    """

    packed: mx.array  # uint32 [rows, cols_padded // 16]
    scales: mx.array  # float32 [rows, cols_padded // group_size], all 1.0
    biases: mx.array  # float32 [rows, cols_padded // group_size], all -1.0
    row_scale: mx.array  # float32 [rows], the tensor's own scale
    shape: tuple[int, int]
    cols_padded: int
    group_size: int
    device: str

    @property
    def nbytes(self) -> int:
        """Bytes held in MLX memory (packed codes, group scales/biases, row scales)."""
        return int(self.packed.nbytes + self.scales.nbytes + self.biases.nbytes + self.row_scale.nbytes)

    def __repr__(self) -> str:
        return (
            f"<PackedTernary {self.shape[0]}x{self.shape[1]} group={self.group_size} "
            f"{self.nbytes} bytes device={self.device!r}>"
        )


def group_size_for(cols_padded: int) -> int:
    """The largest MLX group size dividing ``cols_padded`` (a multiple of 32)."""
    return next(g for g in _GROUP_SIZES if cols_padded % g == 0)


def pack_codes(q: np.ndarray) -> np.ndarray:
    """``int8 [rows, cols]`` ternary codes → ``uint32 [rows, ceil32(cols) / 16]`` (see module doc).

    Raises ``ValueError`` if ``q`` holds anything but -1, 0 and 1.
    """
    q = np.asarray(q)
    if q.ndim != 2 or q.dtype != np.int8:
        raise ValueError(f"q must be a 2-D int8 array, got {q.dtype} {q.shape}")
    if q.size and int(np.abs(q.astype(np.int16)).max()) > 1:
        raise ValueError("q must hold only -1, 0 and 1")
    rows, cols = q.shape
    cols_padded = -(-max(cols, 1) // PAD_MULTIPLE) * PAD_MULTIPLE
    shifts = np.arange(0, 2 * CODES_PER_WORD, 2, dtype=np.uint32)
    out = np.empty((rows, cols_padded // CODES_PER_WORD), dtype=np.uint32)
    for r0 in range(0, rows, _ROW_BLOCK):
        block = q[r0 : r0 + _ROW_BLOCK]
        codes = np.ones((block.shape[0], cols_padded), dtype=np.uint32)  # pad: code 1 = weight 0
        codes[:, :cols] = (block + 1).astype(np.uint32)
        words = codes.reshape(block.shape[0], -1, CODES_PER_WORD) << shifts
        out[r0 : r0 + _ROW_BLOCK] = np.bitwise_or.reduce(words, axis=-1)
    return out


def unpack_codes(packed: np.ndarray, cols: int) -> np.ndarray:
    """Inverse of ``pack_codes`` (numpy, for tests and debugging): ``int8 [rows, cols]``."""
    shifts = np.arange(0, 2 * CODES_PER_WORD, 2, dtype=np.uint32)
    codes = (np.asarray(packed, dtype=np.uint32)[:, :, None] >> shifts) & np.uint32(3)
    return (codes.reshape(packed.shape[0], -1)[:, :cols].astype(np.int8) - 1).astype(np.int8)


def pack_ternary(t: TernaryTensor, device: str) -> PackedTernary:
    """Repack ``t`` once into MLX arrays (the only lasting copy is the packed one)."""
    rows, cols = t.shape
    if cols > MAX_COLS:
        raise ValueError(f"cols={cols} exceeds {MAX_COLS}: int32 accumulation could overflow")
    packed = pack_codes(t.q)
    cols_padded = packed.shape[1] * CODES_PER_WORD
    group = group_size_for(cols_padded)
    groups = cols_padded // group
    prepared = PackedTernary(
        packed=mx.array(packed),
        scales=mx.ones((rows, groups), dtype=mx.float32),
        biases=mx.full((rows, groups), -1.0, dtype=mx.float32),
        row_scale=mx.array(np.ascontiguousarray(t.scale, dtype=np.float32)),
        shape=(rows, cols),
        cols_padded=cols_padded,
        group_size=group,
        device=device,
    )
    mx.eval(prepared.packed, prepared.scales, prepared.biases, prepared.row_scale)
    return prepared
