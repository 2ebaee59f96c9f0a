"""I2_S: bitnet.cpp's 2-bit ternary format (GGML type 36 in its llama.cpp fork only).

Source: microsoft/BitNet, ``src/ggml-bitnet-mad.cpp``, function ``quantize_i2_s`` (the x86 branch,
``QK_I2_S = 128``, which ``llama-quantize ... I2_S`` runs on x86 and which wrote the published
``microsoft/bitnet-b1.58-2B-4T-gguf`` file), cross-checked with ``dequantize_row_i2_s`` in the
fork's ``ggml-quants.c`` and microsoft/BitNet ``docs/i2s-format.md``. Layout of a tensor of
``n = rows * cols`` weights, flattened row-major:

* codes ``value + 1``: 0 = -1, 1 = 0, 2 = +1 (3 is never written; bitnet.cpp's dequantizer reads
  it as 0 while its dot-product kernels read it as +2, so it is rejected here);
* blocks of 128 consecutive weights, 32 bytes each: byte ``j`` of a block holds weights
  ``j, j+32, j+64, j+96`` in bits 7-6, 5-4, 3-2, 1-0 (note: the opposite bit order to TQ2_0);
* after the ``n / 4`` code bytes, one little-endian float32 scale for the whole tensor, then
  padding: the tensor occupies ``n / 4 + 32`` bytes (bitnet.cpp's ``ggml_nbytes`` special case).
  We write zeros as padding; on reading, padding is ignored (llama-quantize leaves it
  uninitialised).

bitnet.cpp's ARM NEON build packs with ``QK_I2_S = 64`` (byte ``j`` of a 16-byte block holds
weights ``j, j+16, j+32, j+48``); files in that layout are not supported — bitnet.cpp's own
dequantizer and published files use the 128 layout above, and a later optional ``ACT_PARALLEL``
build (4-row interleave) is not the default either.

``quantize_i2_s`` takes floats: scale = ``max |x|`` over the tensor, code from the sign, and
``|x| < 1e-6`` counts as zero. For ``q * scale`` input this gives the bytes :func:`pack` writes
whenever ``|scale| >= 1e-6``; for smaller scales bitnet.cpp would write all zeros while
:func:`pack` keeps the codes (the values it stores are then still exactly ``q * scale``).
"""

from __future__ import annotations

import numpy as np

from bitnet_sdk.formats._common import (
    F32_LE,
    ByteSource,
    as_bytes,
    check_codes,
    check_shape,
    check_ternary,
    signed_codes,
)
from bitnet_sdk.formats.constants import (
    FTYPE_MOSTLY_I2_S,
    I2_S_BLOCK_BYTES,
    I2_S_BLOCK_SIZE,
    I2_S_GROUP_SIZE,
    I2_S_TRAILER_BYTES,
    I2_S_TYPE_ID,
)
from bitnet_sdk.formats.registry import PackedFormat
from bitnet_sdk.ternary.reference import TernaryTensor

__all__ = ["FORMAT", "nbytes", "pack", "tensor_scale", "unpack", "unpack_raw"]

FORMAT = PackedFormat(name="i2_s", label="I2_S", type_id=I2_S_TYPE_ID,
                      file_type=FTYPE_MOSTLY_I2_S, block_size=I2_S_BLOCK_SIZE,
                      block_bytes=I2_S_BLOCK_BYTES, trailer_bytes=I2_S_TRAILER_BYTES,
                      per_tensor_scale=True)

_FMT = "I2_S"
_LANES = I2_S_BLOCK_SIZE // I2_S_GROUP_SIZE  # 4 codes per byte
# Group g of a block sits in bits 7-6 for g = 0 down to bits 1-0 for g = 3.
_SHIFTS = (6 - 2 * np.arange(_LANES, dtype=np.uint8)).reshape(1, _LANES, 1)


def nbytes(shape: tuple[int, int]) -> int:
    """Bytes a ``(rows, cols)`` tensor occupies (``rows * cols / 4 + 32``); cols % 128 == 0."""
    rows, cols = check_shape(shape, I2_S_BLOCK_SIZE, _FMT)
    return rows * cols // 4 + I2_S_TRAILER_BYTES


def tensor_scale(t: TernaryTensor) -> np.float32:
    """The one scale I2_S stores for ``t``: the common ``|scale|`` of rows holding non-zeros.

    Rows whose ``q`` is all zero, or whose scale is 0, hold only zeros and may have any scale.
    Returns 0 when no row holds a non-zero (as ``quantize_i2_s`` does). Raises ``ValueError`` if
    the rows holding non-zeros disagree, since I2_S has a single scale per tensor.
    """
    mag = np.abs(t.scale)
    used = np.flatnonzero((mag != 0) & np.any(t.q != 0, axis=1))
    if used.size == 0:
        return np.float32(0)
    first = used[0]
    other = used[mag[used] != mag[first]]
    if other.size:
        raise ValueError(
            f"{_FMT} stores one scale per tensor, but row {first} has scale {mag[first]} and "
            f"row {other[0]} has {mag[other[0]]}; requantize to a per-tensor scale first"
        )
    return np.float32(mag[first])


def pack(t: TernaryTensor) -> np.ndarray:
    """Encode ``t`` as I2_S bytes: a flat uint8 array of ``nbytes(t.shape)``.

    Negative scales are folded into the codes; rows with scale 0 are stored as zeros. Raises
    ``ValueError`` if ``cols`` is not a multiple of 128, ``q`` is not ternary, a scale is
    non-finite, or rows holding non-zeros have different ``|scale|`` (see :func:`tensor_scale`).
    """
    rows, cols = check_shape(t.shape, I2_S_BLOCK_SIZE, _FMT)
    check_ternary(t, _FMT)
    scale = tensor_scale(t)
    n_code_bytes = rows * cols // 4
    codes = (signed_codes(t) + 1).view(np.uint8).reshape(-1, _LANES, I2_S_GROUP_SIZE)
    out = np.zeros(n_code_bytes + I2_S_TRAILER_BYTES, dtype=np.uint8)
    out[:n_code_bytes] = np.bitwise_or.reduce(codes << _SHIFTS, axis=1).reshape(-1)
    out[n_code_bytes : n_code_bytes + 4] = np.array([scale], dtype=F32_LE).view(np.uint8)
    return out


def unpack_raw(data: ByteSource, shape: tuple[int, int]) -> tuple[np.ndarray, np.float32]:
    """Decode I2_S bytes without interpretation: ``(q, scale)``.

    ``q`` is int8 ``[rows, cols]`` holding ``code - 1`` (so -1, 0, 1, and 2 for code 3);
    ``scale`` is the stored float32, whatever its sign or finiteness.
    """
    rows, cols = check_shape(shape, I2_S_BLOCK_SIZE, _FMT)
    flat = as_bytes(data, nbytes((rows, cols)), _FMT)
    n_code_bytes = rows * cols // 4
    blocks = flat[:n_code_bytes].reshape(-1, 1, I2_S_BLOCK_BYTES)
    codes = (blocks >> _SHIFTS) & np.uint8(3)
    q = (codes.view(np.int8) - np.int8(1)).reshape(rows, cols)
    scale = flat[n_code_bytes : n_code_bytes + 4].copy().view(F32_LE)[0]
    return q, np.float32(scale)


def unpack(data: ByteSource, shape: tuple[int, int]) -> TernaryTensor:
    """Decode I2_S bytes into a :class:`TernaryTensor` (the stored scale repeated per row).

    ``data`` is any byte buffer or uint8 array of exactly ``nbytes(shape)`` bytes; shape is
    ``(ne[1], ne[0])`` in GGUF terms. A negative stored scale comes back as ``|scale|`` with
    flipped codes. Raises ``ValueError`` for code 3, or a non-finite scale.
    """
    q, scale = unpack_raw(data, shape)
    check_codes(q, I2_S_BLOCK_SIZE, _FMT)
    if not np.isfinite(scale):
        raise ValueError(f"{_FMT}: the stored tensor scale is not finite ({scale})")
    if scale < 0:
        q = -q
    return TernaryTensor(q, np.full(q.shape[0], abs(scale), dtype=np.float32))
