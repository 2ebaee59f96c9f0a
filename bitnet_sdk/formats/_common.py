"""Validation and scale logic shared by the packed ternary formats (private).

Every format stores ``W = q * scale`` as 2-bit or base-3 codes ``q + 1`` plus scales. The rules
for turning a :class:`TernaryTensor` into codes and block scales, and back, are the same for all
of them, and they follow what llama.cpp's reference quantizers do when fed the float matrix
``q * scale[:, None]``:

* a block's scale is the absolute maximum of its values, so it is ``|scale_row|`` when the block
  holds a non-zero value and exactly 0 otherwise;
* a negative row scale is folded into the signs of the codes (``q * s == (-q) * |s|``);
* a row with scale 0 holds only zeros, whatever ``q`` says.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np

from bitnet_sdk.ternary.reference import TernaryTensor

#: What ``unpack`` accepts: any buffer of bytes, or a uint8/int8 array of any shape.
ByteSource: TypeAlias = bytes | bytearray | memoryview | np.ndarray

#: float16 in the byte order every GGUF file uses.
F16_LE = np.dtype("<f2")
#: float32 in the byte order every GGUF file uses.
F32_LE = np.dtype("<f4")


def check_shape(shape: tuple[int, int], multiple: int, fmt: str) -> tuple[int, int]:
    """Validate a ``(rows, cols)`` shape whose ``cols`` must be a multiple of ``multiple``."""
    try:
        rows, cols = (int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{fmt}: shape must be (rows, cols), got {shape!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"{fmt}: shape must be positive, got ({rows}, {cols})")
    if cols % multiple:
        raise ValueError(f"{fmt}: the number of columns ({cols}) must be a multiple of {multiple}")
    return rows, cols


def as_bytes(data: ByteSource, expected: int, fmt: str) -> np.ndarray:
    """A flat read-only uint8 view of ``data``, which must hold exactly ``expected`` bytes."""
    if isinstance(data, np.ndarray):
        if data.dtype not in (np.uint8, np.int8):
            raise ValueError(f"{fmt}: packed data must be uint8 bytes, got dtype {data.dtype}")
        flat = data.reshape(-1).view(np.uint8)
    else:
        flat = np.frombuffer(data, dtype=np.uint8)
    if flat.size != expected:
        raise ValueError(f"{fmt}: expected {expected} bytes for this shape, got {flat.size}")
    return flat


def check_ternary(t: TernaryTensor, fmt: str) -> None:
    """Reject values outside {-1, 0, 1} and non-finite scales, which no format can store."""
    if t.q.size and (int(t.q.min()) < -1 or int(t.q.max()) > 1):
        raise ValueError(f"{fmt}: q must hold only -1, 0 and 1")
    if not np.all(np.isfinite(t.scale)):
        raise ValueError(f"{fmt}: scales must be finite")


def signed_codes(t: TernaryTensor) -> np.ndarray:
    """``q`` with each row's scale sign folded in (zero rows for a zero scale), as int8."""
    sign = np.sign(t.scale).astype(np.int8)
    return t.q * sign[:, None]


def block_scales_f16(q_eff: np.ndarray, scale: np.ndarray, block: int, fmt: str) -> np.ndarray:
    """Per-block fp16 scales as llama.cpp's quantizer computes them (``[rows, cols // block]``).

    ``q_eff`` is :func:`signed_codes`; a block's scale is ``|scale_row|`` if it holds a non-zero
    code, else 0. Rounding to fp16 is round-to-nearest-even, as numpy and ggml both do.
    """
    rows, cols = q_eff.shape
    nonzero = np.any(q_eff.reshape(rows, cols // block, block) != 0, axis=2)
    mag = np.where(nonzero, np.abs(scale)[:, None], np.float32(0))
    with np.errstate(over="ignore"):
        d = mag.astype(F16_LE)
    if np.isinf(d).any():
        raise ValueError(f"{fmt}: a scale is too large for fp16 (max 65504)")
    return d


def row_scales(q: np.ndarray, d: np.ndarray, block: int, fmt: str) -> TernaryTensor:
    """Turn raw block codes and block scales into one scale per row (see ``unpack`` docs).

    ``q`` is int8 ``[rows, cols]`` in {-1, 0, 1}; ``d`` is float32 ``[rows, cols // block]``.
    Negative block scales are folded into the codes; blocks with scale 0 become zeros. The row's
    scale is the common ``|d|`` of its non-zero blocks; rows with no non-zero block take the
    tensor-wide common scale if there is one, else 0.
    """
    rows, cols = q.shape
    nb = cols // block
    # Comparisons, not np.sign: a NaN scale must not warn here (it is reported below).
    sign = (d > 0).astype(np.int8) - (d < 0).astype(np.int8)
    q_eff = (q.reshape(rows, nb, block) * sign[:, :, None]).reshape(rows, cols)
    mag = np.abs(d)
    used = (mag != 0) & np.any(q.reshape(rows, nb, block) != 0, axis=2)  # NaN counts as used
    if not np.all(np.isfinite(mag[used])):
        r, b = np.argwhere(used & ~np.isfinite(mag))[0]
        raise ValueError(f"{fmt}: block {b} of row {r} has a non-finite scale {d[r, b]}")
    ref = np.where(used, mag, -np.inf).max(axis=1)
    bad = used & (mag != ref[:, None])
    if bad.any():
        r, b = np.argwhere(bad)[0]
        raise ValueError(
            f"{fmt}: row {r} mixes block scales {ref[r]} and {mag[r, b]} (block {b}); a "
            f"TernaryTensor has one scale per row — use unpack_blocks() for per-block scales"
        )
    has = used.any(axis=1)
    common = np.unique(ref[has])
    fallback = common[0] if common.size == 1 else np.float32(0)
    scale = np.where(has, ref, fallback).astype(np.float32)
    return TernaryTensor(np.ascontiguousarray(q_eff), scale)


def check_codes(codes_q: np.ndarray, block: int, fmt: str) -> None:
    """Reject the 2-bit code 3 (value +2), which no ternary source produces."""
    bad = codes_q > 1
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"{fmt}: invalid 2-bit code 3 at row {r}, column {c} (block {c // block}); "
            f"only codes 0, 1, 2 encode ternary values"
        )
