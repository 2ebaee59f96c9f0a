"""TQ2_0: llama.cpp's 2-bit ternary block format (GGML type 35), in vectorised numpy.

Layout (ggml ``block_tq2_0``, read from ggml-org/llama.cpp ``ggml/src/ggml-common.h`` and
``quantize_row_tq2_0_ref`` in ``ggml/src/ggml-quants.c``): each row is cut into blocks of 256
weights; a block is 64 bytes of codes then one little-endian fp16 scale ``d`` (66 bytes). The
codes are ``value + 1`` in {0, 1, 2}. Within each 128-weight half of the block, byte ``m``
(0..31) holds weights ``m, m+32, m+64, m+96`` in bits 0-1, 2-3, 4-5, 6-7 respectively.
A weight's value is ``d * (code - 1)``.

``pack`` writes exactly the bytes ``gguf.quants.quantize(q * scale[:, None], TQ2_0)`` writes:
``d`` is the block's absolute maximum (``|scale|``, or 0 for an all-zero block) rounded to fp16.
So ``unpack(pack(t)) == t`` when every scale is fp16-representable and non-negative (a negative
scale comes back as a positive one with flipped codes; an all-zero row takes the tensor's common
scale, see ``unpack``). ``pack(unpack(b)) == b`` for canonical bytes, i.e. bytes that quantizer
can write: codes in {0, 1, 2}, ``d >= 0``, and only code 1 in blocks whose ``d`` is 0.
"""

from __future__ import annotations

import numpy as np

from bitnet_sdk.formats._common import (
    F16_LE,
    ByteSource,
    as_bytes,
    block_scales_f16,
    check_codes,
    check_shape,
    check_ternary,
    row_scales,
    signed_codes,
)
from bitnet_sdk.formats.constants import (
    TQ2_0_BLOCK_BYTES,
    TQ2_0_BLOCK_SIZE,
    TQ2_0_GROUP_SIZE,
    TQ2_0_QS_BYTES,
    TQ2_0_TYPE_ID,
    LlamaFileType,
)
from bitnet_sdk.formats.registry import PackedFormat
from bitnet_sdk.ternary.reference import TernaryTensor

__all__ = ["FORMAT", "nbytes", "pack", "unpack", "unpack_blocks"]

FORMAT = PackedFormat(name="tq2_0", label="TQ2_0", type_id=TQ2_0_TYPE_ID,
                      file_type=int(LlamaFileType.MOSTLY_TQ2_0),
                      block_size=TQ2_0_BLOCK_SIZE, block_bytes=TQ2_0_BLOCK_BYTES)

_FMT = "TQ2_0"
_LANES = 4  # 2-bit codes per byte
_SHIFTS = (np.arange(_LANES, dtype=np.uint8) * 2).reshape(1, 1, _LANES, 1)


def nbytes(shape: tuple[int, int]) -> int:
    """Bytes a ``(rows, cols)`` tensor occupies; ``cols`` must be a multiple of 256."""
    rows, cols = check_shape(shape, TQ2_0_BLOCK_SIZE, _FMT)
    return rows * (cols // TQ2_0_BLOCK_SIZE) * TQ2_0_BLOCK_BYTES


def pack(t: TernaryTensor) -> np.ndarray:
    """Encode ``t`` as TQ2_0 bytes: a flat uint8 array of ``nbytes(t.shape)`` (row-major blocks).

    Raises ``ValueError`` if ``cols`` is not a multiple of 256, ``q`` is not ternary, or a scale
    is non-finite or beyond fp16 range.
    """
    rows, cols = check_shape(t.shape, TQ2_0_BLOCK_SIZE, _FMT)
    check_ternary(t, _FMT)
    q_eff = signed_codes(t)
    d = block_scales_f16(q_eff, t.scale, TQ2_0_BLOCK_SIZE, _FMT)
    n_blocks = rows * (cols // TQ2_0_BLOCK_SIZE)
    codes = (
        (q_eff + 1).view(np.uint8).reshape(-1, TQ2_0_BLOCK_SIZE // 128, _LANES, TQ2_0_GROUP_SIZE)
    )
    qs = np.bitwise_or.reduce(codes << _SHIFTS, axis=2)
    out = np.empty((n_blocks, TQ2_0_BLOCK_BYTES), dtype=np.uint8)
    out[:, :TQ2_0_QS_BYTES] = qs.reshape(n_blocks, TQ2_0_QS_BYTES)
    out[:, TQ2_0_QS_BYTES:] = d.reshape(n_blocks, 1).view(np.uint8)
    return out.reshape(-1)


def unpack_blocks(data: ByteSource, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode TQ2_0 bytes without interpretation: ``(q, d)``.

    ``q`` is int8 ``[rows, cols]`` holding ``code - 1`` (so -1, 0, 1, and 2 for the code 3 that
    ggml would dequantize to ``2 * d``); ``d`` is float32 ``[rows, cols // 256]``, the block scales
    as stored. Value ``[r, c]`` is ``d[r, c // 256] * q[r, c]``.
    """
    rows, cols = check_shape(shape, TQ2_0_BLOCK_SIZE, _FMT)
    blocks = as_bytes(data, nbytes((rows, cols)), _FMT).reshape(-1, TQ2_0_BLOCK_BYTES)
    qs = blocks[:, :TQ2_0_QS_BYTES].reshape(-1, TQ2_0_BLOCK_SIZE // 128, 1, TQ2_0_GROUP_SIZE)
    codes = (qs >> _SHIFTS) & np.uint8(3)
    q = (codes.view(np.int8) - np.int8(1)).reshape(rows, cols)
    d = np.ascontiguousarray(blocks[:, TQ2_0_QS_BYTES:]).view(F16_LE).astype(np.float32)
    return q, d.reshape(rows, cols // TQ2_0_BLOCK_SIZE)


def unpack(data: ByteSource, shape: tuple[int, int]) -> TernaryTensor:
    """Decode TQ2_0 bytes into a :class:`TernaryTensor` with one scale per row.

    ``data`` is any byte buffer or uint8 array of exactly ``nbytes(shape)`` bytes (e.g. the array
    ``gguf.GGUFReader`` gives for a tensor; GGUF's ``ne`` order is reversed: shape is
    ``(ne[1], ne[0])``). The returned tensor dequantizes to exactly what ggml computes, and:

    * a row's scale is the common ``|d|`` of its blocks holding non-zero codes; if those blocks
      disagree (bytes not written from a one-scale-per-row source) ``ValueError`` is raised —
      use :func:`unpack_blocks` to get per-block scales;
    * blocks with a negative ``d`` come back with flipped codes and ``|d|``; blocks with ``d == 0``
      come back as zeros;
    * a row with no non-zero block gets the tensor's common scale if all non-zero blocks share
      one (BitNet's per-tensor scale), else 0;
    * code 3 (value +2) and non-finite scales in non-zero blocks raise ``ValueError``.
    """
    q, d = unpack_blocks(data, shape)
    check_codes(q, TQ2_0_BLOCK_SIZE, _FMT)
    return row_scales(q, d, TQ2_0_BLOCK_SIZE, _FMT)
