"""TQ1_0: llama.cpp's base-3 ternary block format (GGML type 34), in vectorised numpy.

Layout (ggml ``block_tq1_0``, read from ggml-org/llama.cpp ``ggml/src/ggml-common.h`` and
``quantize_row_tq1_0_ref`` / ``dequantize_row_tq1_0`` in ``ggml/src/ggml-quants.c``): each row is
cut into blocks of 256 weights; a block is ``qs`` (48 bytes), ``qh`` (4 bytes) and one
little-endian fp16 scale ``d`` (54 bytes). Codes are trits ``value + 1`` in {0, 1, 2}:

* ``qs[0:32]``: byte ``m`` packs weights ``m + 32*n`` for n = 0..4 (weights 0..159);
* ``qs[32:48]``: byte ``m`` packs weights ``160 + m + 16*n`` for n = 0..4 (weights 160..239);
* ``qh[0:4]``: byte ``j`` packs weights ``240 + j + 4*n`` for n = 0..3 (weights 240..255), with a
  fifth, zero trit.

A byte holding trits ``t0..t4`` (``t0`` most significant) stores ``v = sum t_n * 3**(4-n)``
(0..242) as ``ceil(v * 256 / 243)``, a fixed-point fraction of 3**5; trit ``n`` is read back as
``((byte * 3**n) mod 256) * 3 >> 8``. A weight's value is ``d * (trit - 1)``.

``pack`` writes exactly the bytes ``gguf.quants.quantize(q * scale[:, None], TQ1_0)`` writes (see
:mod:`bitnet_sdk.formats.tq2_0` for the scale rules, which are the same); round trips hold as
described there. Every byte decodes to valid trits, but only bytes of the form
``ceil(v * 256 / 243)`` are canonical, so ``pack(unpack(b)) == b`` holds for canonical bytes.
"""

from __future__ import annotations

import numpy as np

from bitnet_sdk.formats._common import (
    F16_LE,
    ByteSource,
    as_bytes,
    block_scales_f16,
    check_shape,
    check_ternary,
    row_scales,
    signed_codes,
)
from bitnet_sdk.formats.constants import (
    TQ1_0_BLOCK_BYTES,
    TQ1_0_BLOCK_SIZE,
    TQ1_0_QH_BYTES,
    TQ1_0_QS_BYTES,
    TQ1_0_TYPE_ID,
    LlamaFileType,
)
from bitnet_sdk.formats.registry import PackedFormat
from bitnet_sdk.ternary.reference import TernaryTensor

__all__ = ["FORMAT", "nbytes", "pack", "unpack", "unpack_blocks"]

FORMAT = PackedFormat(name="tq1_0", label="TQ1_0", type_id=TQ1_0_TYPE_ID,
                      file_type=int(LlamaFileType.MOSTLY_TQ1_0),
                      block_size=TQ1_0_BLOCK_SIZE, block_bytes=TQ1_0_BLOCK_BYTES)

_FMT = "TQ1_0"
_TRITS = 5  # trits per byte: 3**5 = 243 <= 256
_WIDE = 32  # bytes in the first qs run (5 * 32 = 160 weights)
_NARROW = TQ1_0_QS_BYTES - _WIDE  # bytes in the second qs run (5 * 16 = 80 weights)
_A_END = _TRITS * _WIDE  # 160
_B_END = _A_END + _TRITS * _NARROW  # 240
_QH_TRITS = 4  # qh bytes hold 4 trits (16 weights over 4 bytes)

# Place values of trits 0..4 in a byte (most significant first) ...
_PLACE = (3 ** np.arange(_TRITS - 1, -1, -1)).astype(np.uint16)
# ... and the multipliers that bring trit n to the top of the fraction (mod 256).
_LIFT = (3 ** np.arange(_TRITS)).astype(np.uint8)


def nbytes(shape: tuple[int, int]) -> int:
    """Bytes a ``(rows, cols)`` tensor occupies; ``cols`` must be a multiple of 256."""
    rows, cols = check_shape(shape, TQ1_0_BLOCK_SIZE, _FMT)
    return rows * (cols // TQ1_0_BLOCK_SIZE) * TQ1_0_BLOCK_BYTES


def _encode(trits: np.ndarray, place: np.ndarray) -> np.ndarray:
    """``[..., n, m]`` trits -> ``[..., m]`` bytes ``ceil(sum_n t_n * place_n * 256 / 243)``."""
    v = np.matmul(place, trits)  # uint16, at most 242
    return ((v * 256 + 242) // 243).astype(np.uint8)


def _decode(qbytes: np.ndarray, n_trits: int) -> np.ndarray:
    """``[..., m]`` bytes -> ``[..., n, m]`` trits (uint8 arithmetic wraps mod 256 on purpose)."""
    lifted = qbytes[..., None, :] * _LIFT[:n_trits, None]
    return ((lifted.astype(np.uint16) * 3) >> 8).astype(np.uint8)


def pack(t: TernaryTensor) -> np.ndarray:
    """Encode ``t`` as TQ1_0 bytes: a flat uint8 array of ``nbytes(t.shape)`` (row-major blocks).

    Raises ``ValueError`` if ``cols`` is not a multiple of 256, ``q`` is not ternary, or a scale
    is non-finite or beyond fp16 range.
    """
    check_shape(t.shape, TQ1_0_BLOCK_SIZE, _FMT)
    check_ternary(t, _FMT)
    q_eff = signed_codes(t)
    d = block_scales_f16(q_eff, t.scale, TQ1_0_BLOCK_SIZE, _FMT)
    codes = (q_eff + 1).view(np.uint8).reshape(-1, TQ1_0_BLOCK_SIZE)
    n_blocks = codes.shape[0]
    out = np.empty((n_blocks, TQ1_0_BLOCK_BYTES), dtype=np.uint8)
    out[:, :_WIDE] = _encode(codes[:, :_A_END].reshape(-1, _TRITS, _WIDE), _PLACE)
    out[:, _WIDE:TQ1_0_QS_BYTES] = _encode(
        codes[:, _A_END:_B_END].reshape(-1, _TRITS, _NARROW), _PLACE
    )
    qh = codes[:, _B_END:].reshape(-1, _QH_TRITS, TQ1_0_QH_BYTES)
    out[:, TQ1_0_QS_BYTES : TQ1_0_QS_BYTES + TQ1_0_QH_BYTES] = _encode(qh, _PLACE[:_QH_TRITS])
    out[:, TQ1_0_QS_BYTES + TQ1_0_QH_BYTES :] = d.reshape(n_blocks, 1).view(np.uint8)
    return out.reshape(-1)


def unpack_blocks(data: ByteSource, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode TQ1_0 bytes without interpretation: ``(q, d)``.

    ``q`` is int8 ``[rows, cols]`` in {-1, 0, 1} (``trit - 1``); ``d`` is float32
    ``[rows, cols // 256]``, the block scales as stored. Value ``[r, c]`` is
    ``d[r, c // 256] * q[r, c]``.
    """
    rows, cols = check_shape(shape, TQ1_0_BLOCK_SIZE, _FMT)
    blocks = as_bytes(data, nbytes((rows, cols)), _FMT).reshape(-1, TQ1_0_BLOCK_BYTES)
    n_blocks = blocks.shape[0]
    codes = np.empty((n_blocks, TQ1_0_BLOCK_SIZE), dtype=np.uint8)
    codes[:, :_A_END] = _decode(blocks[:, :_WIDE], _TRITS).reshape(n_blocks, -1)
    codes[:, _A_END:_B_END] = _decode(blocks[:, _WIDE:TQ1_0_QS_BYTES], _TRITS).reshape(n_blocks, -1)
    qh = blocks[:, TQ1_0_QS_BYTES : TQ1_0_QS_BYTES + TQ1_0_QH_BYTES]
    codes[:, _B_END:] = _decode(qh, _QH_TRITS).reshape(n_blocks, -1)
    q = (codes.view(np.int8) - np.int8(1)).reshape(rows, cols)
    d_bytes = np.ascontiguousarray(blocks[:, TQ1_0_QS_BYTES + TQ1_0_QH_BYTES :])
    d = d_bytes.view(F16_LE).astype(np.float32).reshape(rows, cols // TQ1_0_BLOCK_SIZE)
    return q, d


def unpack(data: ByteSource, shape: tuple[int, int]) -> TernaryTensor:
    """Decode TQ1_0 bytes into a :class:`TernaryTensor` with one scale per row.

    Same contract as :func:`bitnet_sdk.formats.tq2_0.unpack` (row scale = the common ``|d|`` of the
    row's non-zero blocks, ``ValueError`` if they differ; all-zero rows take the tensor's common
    scale), except that every TQ1_0 byte decodes to valid trits.
    """
    q, d = unpack_blocks(data, shape)
    return row_scales(q, d, TQ1_0_BLOCK_SIZE, _FMT)
