"""Fast packers: rows of 2-bit codes (``value + 1``) with one per-tensor scale → format bytes.

The format modules (:mod:`~bitnet_sdk.formats.tq2_0`, :mod:`~bitnet_sdk.formats.tq1_0`,
:mod:`~bitnet_sdk.formats.i2_s`) pack a whole :class:`~bitnet_sdk.ternary.TernaryTensor` and are
the readable reference. Quantizing a checkpoint produces the codes row chunk by row chunk with
one positive absmean scale, so these packers take exactly that — ``codes`` uint8 ``[rows, cols]``
in {0, 1, 2} and a scale ``> 0`` — and write the chunk's bytes into a slice of the output, with
fewer numpy passes (no signed codes, no per-row scale logic, Horner's rule and a lookup table
instead of an integer matmul for TQ1_0). Their output is byte-equal to ``pack`` of
``TernaryTensor.from_scalar(codes - 1, scale)`` (``tests/formats/test_codes.py``).

A row chunk of a TQ format, or of I2_S (whose 128-weight blocks run over the flattened tensor
but never cross a row, since ``cols % 128 == 0``), is a contiguous slice of the packed codes, so
chunks can be packed independently, in any order, by any thread: see :func:`chunk_slice`.
"""

from __future__ import annotations

import numpy as np

from bitnet_sdk.formats._common import F16_LE, F32_LE
from bitnet_sdk.formats.constants import (
    I2_S_GROUP_SIZE,
    I2_S_TRAILER_BYTES,
    TQ1_0_BLOCK_BYTES,
    TQ1_0_BLOCK_SIZE,
    TQ1_0_QS_BYTES,
    TQ2_0_BLOCK_BYTES,
    TQ2_0_BLOCK_SIZE,
    TQ2_0_GROUP_SIZE,
    TQ2_0_QS_BYTES,
)

__all__ = ["TQ1_BYTE", "chunk_slice", "code_bytes", "finish", "pack_rows"]

#: Packed bytes per weight row of ``cols`` weights, per format (I2_S: codes only).
_ROW_BYTES = {
    "tq2_0": lambda cols: cols // TQ2_0_BLOCK_SIZE * TQ2_0_BLOCK_BYTES,
    "tq1_0": lambda cols: cols // TQ1_0_BLOCK_SIZE * TQ1_0_BLOCK_BYTES,
    "i2_s": lambda cols: cols // 4,
}
#: ceil(v * 256 / 243) for v = 0..242: TQ1_0's byte for five trits of value v.
TQ1_BYTE = ((np.arange(243, dtype=np.uint16) * 256 + 242) // 243).astype(np.uint8)
_ALL_ZERO_TQ2 = np.uint64(0x5555555555555555)  # eight bytes of four code-1 (zero) lanes
_ZERO_TQ1_QS = TQ1_BYTE[121]  # five zero trits (code 1): 11111 in base 3
_ZERO_TQ1_QH = TQ1_BYTE[120]  # four zero trits and qh's fifth, always-0 trit: 11110


def code_bytes(qtype: str, shape: tuple[int, int]) -> int:
    """Bytes of packed codes (I2_S: without its 32-byte trailer) for ``(rows, cols)``."""
    return shape[0] * _ROW_BYTES[qtype](shape[1])


def chunk_slice(qtype: str, cols: int, r0: int, r1: int) -> slice:
    """The bytes rows ``r0 <= r < r1`` occupy in the packed tensor."""
    per_row = _ROW_BYTES[qtype](cols)
    return slice(r0 * per_row, r1 * per_row)


def _d16(nonzero: np.ndarray, scale: float) -> np.ndarray:
    """fp16 block scales: ``scale`` (as float32) rounded to fp16 for blocks with a non-zero
    code, else 0 — as ``_common.block_scales_f16`` does."""
    return np.where(nonzero, np.float32(scale).astype(np.float16), np.float16(0)).astype(F16_LE)


def _tq2(codes: np.ndarray, scale: float, out: np.ndarray) -> None:
    c = codes.reshape(-1, 2, 4, TQ2_0_GROUP_SIZE)
    blocks = out.reshape(-1, TQ2_0_BLOCK_BYTES)
    qs = c[:, :, 0] | (c[:, :, 1] << 2)
    qs |= c[:, :, 2] << 4
    qs |= c[:, :, 3] << 6
    qs = qs.reshape(-1, TQ2_0_QS_BYTES)
    blocks[:, :TQ2_0_QS_BYTES] = qs
    nonzero = ~(qs.view(np.uint64) == _ALL_ZERO_TQ2).all(axis=1)
    blocks[:, TQ2_0_QS_BYTES:] = _d16(nonzero, scale).reshape(-1, 1).view(np.uint8)


def _horner(trits: np.ndarray) -> np.ndarray:
    """``[..., n, m]`` trits → ``[..., m]`` TQ1_0 bytes (most significant trit first; fewer
    than five trits are followed by zero trits, as in ``qh``)."""
    v = trits[..., 0, :].copy()
    for i in range(1, 5):
        v *= np.uint8(3)
        if i < trits.shape[-2]:
            v += trits[..., i, :]
    return TQ1_BYTE[v]


def _tq1(codes: np.ndarray, scale: float, out: np.ndarray) -> None:
    c = codes.reshape(-1, TQ1_0_BLOCK_SIZE)
    blocks = out.reshape(-1, TQ1_0_BLOCK_BYTES)
    blocks[:, :32] = _horner(c[:, :160].reshape(-1, 5, 32))
    blocks[:, 32:TQ1_0_QS_BYTES] = _horner(c[:, 160:240].reshape(-1, 5, 16))
    blocks[:, TQ1_0_QS_BYTES : TQ1_0_QS_BYTES + 4] = _horner(c[:, 240:].reshape(-1, 4, 4))
    zero = (blocks[:, :TQ1_0_QS_BYTES] == _ZERO_TQ1_QS).all(axis=1)
    zero &= (blocks[:, TQ1_0_QS_BYTES : TQ1_0_QS_BYTES + 4] == _ZERO_TQ1_QH).all(axis=1)
    nonzero = ~zero
    blocks[:, TQ1_0_BLOCK_BYTES - 2 :] = _d16(nonzero, scale).reshape(-1, 1).view(np.uint8)


def _i2s(codes: np.ndarray, scale: float, out: np.ndarray) -> None:
    c = codes.reshape(-1, 4, I2_S_GROUP_SIZE)
    b = c[:, 0] << 6
    b |= c[:, 1] << 4
    b |= c[:, 2] << 2
    b |= c[:, 3]
    out[:] = b.reshape(-1)


_PACKERS = {"tq2_0": _tq2, "tq1_0": _tq1, "i2_s": _i2s}


def pack_rows(qtype: str, codes: np.ndarray, scale: float, out: np.ndarray) -> None:
    """Pack ``codes`` (uint8 ``[rows, cols]`` in {0, 1, 2}, C-contiguous) with the positive
    per-tensor ``scale`` into ``out`` (uint8, exactly ``code_bytes(qtype, codes.shape)``)."""
    _PACKERS[qtype](codes, scale, out)


def finish(qtype: str, data: np.ndarray, scale: float) -> None:
    """Write what follows the codes: I2_S's trailer (the float32 scale, zero padding). The
    tensor must hold a non-zero code: for an all-zero tensor I2_S stores the scale 0."""
    if qtype == "i2_s":
        data[-I2_S_TRAILER_BYTES:] = 0
        data[-I2_S_TRAILER_BYTES : -I2_S_TRAILER_BYTES + 4] = np.array([scale], dtype=F32_LE).view(np.uint8)
