"""Fast absmean ternary quantization of BF16 weights, byte-equal to the reference path.

The reference path (``ternary.quantize_weights`` on the float32 matrix, then
``writer.encode_projection``) makes a dozen numpy passes over float32 copies of the whole
tensor. A BF16 weight has only 65,536 possible bit patterns, so here every per-weight function
is a lookup table over those patterns, computed with the reference's own numpy operations, and
the tensor is read from the memory map in chunks of rows (bounded memory):

1. pass one: a histogram of the bit patterns (plus, for the report, the float layer output on
   the calibration rows);
2. the absmean scale ``s`` from the histogram: ``Σ count · |w|`` summed exactly (``math.fsum``).
   The reference sums in float64 in numpy's order (pairwise within 8,192-element buffers), which
   can differ from the exact sum in the last bits; ``float32(s)`` — all that is stored or used —
   is the same unless the mean lies within that error of a float32 rounding boundary, and then
   (odds about 2⁻¹² per tensor) the sum is recomputed in numpy's own order
   (:func:`absmean_reference_order`);
3. pass two: codes = ``table[bits]`` where ``table = clip(round(values / float32(s)), -1, 1) + 1``
   over all 65,536 values, packed by :mod:`bitnet_sdk.formats.codes`; the ternary layer output
   on the calibration rows for the report.

The relative weight error comes from the histogram too. Tensors the fast path does not cover
(non-finite values, ternary-valued weights that the reference keeps exactly, no non-zero code, a
scale beyond fp16 for TQ formats) return ``None`` and take the reference path.
``tests/quantization/test_bf16.py`` checks byte equality with the reference path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ml_dtypes
import numpy as np
from bitnet_kernels import HeadMatrix

from bitnet_sdk.formats import codes as packers
from bitnet_sdk.formats import nbytes as format_nbytes
from bitnet_sdk.formats import type_id as format_type_id
from bitnet_sdk.formats.codes import TQ1_BYTE
from bitnet_sdk.quantization.native import head_kernels
from bitnet_sdk.quantization.native import kernels as native_kernels
from bitnet_sdk.quantization.report import cosine_rows
from bitnet_sdk.ternary import EPS, quantize_activations

if TYPE_CHECKING:
    from bitnet_kernels import KernelLibrary
    from bitnet_kernels.ternarize import TernarizeKernels

__all__ = [
    "FastProjection",
    "absmean_reference_order",
    "encode_f16",
    "looks_ternary",
    "quantize_projection",
    "row_chunks",
]

#: Elements per chunk of rows: small enough for the caches, large enough for numpy.
CHUNK_ELEMENTS = 1 << 18
_PATTERNS = 1 << 16
#: Every BF16 bit pattern as float32 (NaN and inf included).
VALUES = (np.arange(_PATTERNS, dtype=np.uint32) << 16).view(np.float32)
_FINITE = np.isfinite(VALUES)
with np.errstate(over="ignore", invalid="ignore"):  # NaN patterns: never used
    _MAGNITUDES = np.abs(VALUES[: _PATTERNS // 2]).astype(np.float64)  # index = bits & 0x7fff
    _F16_BITS = VALUES.astype("<f2").view(np.uint16)  # BF16 bits -> F16 bits


def row_chunks(rows: int, cols: int, elements: int = CHUNK_ELEMENTS) -> Iterator[tuple[int, int]]:
    """``(r0, r1)`` row ranges of about ``elements`` weights each."""
    step = max(1, elements // max(cols, 1))
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


def absmean_reference_order(raw: np.ndarray) -> float:
    """``mean(|w|)`` in float64 summed exactly as ``np.mean(np.abs(w), dtype=np.float64)`` does:
    pairwise within buffers of ``np.getbufsize()`` elements, buffers added in order."""
    flat = raw.reshape(-1)
    buf = np.getbufsize()
    step = max(buf, CHUNK_ELEMENTS // buf * buf)
    total = 0.0
    for i in range(0, flat.size, step):
        part = np.abs(VALUES[flat[i : i + step]]).astype(np.float64)
        for j in range(0, part.size, buf):
            total += float(np.add.reduce(part[j : j + buf]))
    return total / flat.size


def _absmean(raw: np.ndarray, hist: np.ndarray) -> float:
    """The reference's ``max(mean(|w|), EPS)`` as float32 would round it (see module docs)."""
    n = raw.size
    counts = (hist[: _PATTERNS // 2] + hist[_PATTERNS // 2 :]).astype(np.float64)
    nz = np.flatnonzero(counts)
    mean = math.fsum((counts[nz] * _MAGNITUDES[nz]).tolist()) / n
    s32 = np.float32(max(mean, EPS))
    bound = (n / np.getbufsize() + 64) * 2.0**-52 * mean + 2.0**-1074
    edges = [EPS] + [(float(s32) + float(np.nextafter(s32, d))) / 2 for d in (np.float32(0), np.float32(np.inf))]
    if any(abs(mean - e) <= bound for e in edges):
        mean = absmean_reference_order(raw)
    return max(mean, EPS)


def looks_ternary(raw: np.ndarray) -> bool:
    """Whether the reference might keep this tensor exactly (``ternarize_rows``): every row's
    non-zero weights share one magnitude. Answered from the first rows; a full check is the
    reference path's own."""
    for r in range(min(len(raw), 4)):
        mags = raw[r] & np.uint16(0x7FFF)
        nz = mags[mags != 0]
        if nz.size and (nz != nz[0]).any():
            return False
    return True


@dataclass(frozen=True)
class FastProjection:
    """A quantized projection: ``data`` (GGML ``type_id``), the scale the file holds, and the
    report's figures (relative weight error; output cosine mean/min, None without calibration)."""

    data: np.ndarray
    type_id: int
    stored_scale: float
    relative_error: float
    output_cosine: float | None
    output_cosine_min: float | None


def _histogram(raw: np.ndarray, x: np.ndarray | None, ref_out: np.ndarray,
               kernels: TernarizeKernels | None) -> np.ndarray:  # fmt: skip
    """Counts of ``raw``'s bit patterns (one native pass with ``kernels``); with ``x``, the float
    layer output ``ref_out`` too (numpy, in the same chunks)."""
    rows, cols = raw.shape
    hist = np.zeros(_PATTERNS, dtype=np.int64)
    if kernels is not None:
        kernels.histogram(raw, hist)
        if x is None:
            return hist
    for r0, r1 in row_chunks(rows, cols):
        idx = raw[r0:r1].reshape(-1).astype(np.intp)
        if kernels is None:
            hist += np.bincount(idx, minlength=_PATTERNS)
        if x is not None:
            w = np.take(VALUES, idx).reshape(r1 - r0, cols)
            ref_out[r0:r1] = w @ x.T
    return hist


def _pack(qtype: str, raw: np.ndarray, table: np.ndarray, stored: float, data: np.ndarray,
          kernels: TernarizeKernels | None, codes: np.ndarray | None = None) -> None:  # fmt: skip
    """The format's bytes of codes ``table[raw]`` into ``data``: one native pass (which also
    fills ``codes`` with the ternary values when given), or numpy chunks."""
    rows, cols = raw.shape
    if kernels is not None:
        d16 = int(np.float32(stored).astype(np.float16).view(np.uint16))
        kernels.pack(qtype, raw, table, TQ1_BYTE, d16, data[: packers.code_bytes(qtype, (rows, cols))], codes)
    else:
        for r0, r1 in row_chunks(rows, cols):
            idx = raw[r0:r1].astype(np.intp)
            packers.pack_rows(qtype, np.take(table, idx), stored, data[packers.chunk_slice(qtype, cols, r0, r1)])
    packers.finish(qtype, data, stored)


def _ternary_out(raw: np.ndarray, table: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """``[n, rows]`` int32-exact sums ``q · xq`` of the ternary layer on the calibration rows
    (as float32: every sum is an integer below 2^24, so any order gives the same bits)."""
    rows, cols = raw.shape
    out = np.empty((rows, len(xq)), dtype=np.float32)
    xq_t = np.ascontiguousarray(xq.astype(np.float32).T)
    q_f32 = table.astype(np.float32) - np.float32(1)
    for r0, r1 in row_chunks(rows, cols):
        out[r0:r1] = np.take(q_f32, raw[r0:r1].astype(np.intp)) @ xq_t
    return out.T


def _native_outputs(heads: KernelLibrary, raw: np.ndarray, codes: np.ndarray, x: np.ndarray,
                    xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The float and ternary layer outputs ``[n, rows]`` on the calibration rows through the
    head kernels (BF16 rows read as stored; int8 ``codes`` times ``xq``, exact)."""
    ref = heads.head(HeadMatrix(raw.view(ml_dtypes.bfloat16), None, "bf16"), x)
    ones = np.ones(raw.shape[0], dtype=np.float32)
    return ref, heads.head(HeadMatrix(codes, ones, "i8"), xq.astype(np.float32))


def _relative_error(hist: np.ndarray, table: np.ndarray, stored: float) -> float:
    used = np.flatnonzero(hist)
    w = VALUES[used].astype(np.float64)
    c = hist[used].astype(np.float64)
    d = w - (table[used].astype(np.float64) - 1.0) * float(np.float32(stored))
    ref = float(np.dot(c, w * w))
    err = float(np.dot(c, d * d))
    if ref == 0.0:
        return 0.0 if err == 0.0 else float("inf")
    return math.sqrt(err / ref)


def quantize_projection(raw: np.ndarray, qtype: str, calib: np.ndarray | None) -> FastProjection | None:
    """Absmean-quantize the BF16 matrix ``raw`` (uint16 ``[rows, cols]``, e.g. a memory map)
    to ``qtype``; None when the reference path must handle it (see the module docstring).
    ``cols`` must fit the format's blocks."""
    rows, cols = raw.shape
    if looks_ternary(raw):
        return None
    x = None if calib is None or not len(calib) else np.ascontiguousarray(calib, dtype=np.float32)
    kernels = native_kernels() if raw.dtype == np.uint16 and raw.flags.c_contiguous else None
    ref_out = np.empty((rows, 0 if x is None else len(x)), dtype=np.float32)
    # natively, the float outputs come from the head kernel after packing
    hist = _histogram(raw, x if kernels is None else None, ref_out, kernels)
    if hist[~_FINITE].any():
        return None
    s32 = np.float32(_absmean(raw, hist))
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.clip(np.round(VALUES / s32), -1, 1)
    q[~_FINITE] = 0
    table = (q.astype(np.int8) + 1).view(np.uint8)
    if not (hist * (table != 1)).any():
        return None  # all zero codes: the reference's scale rules for that case apply
    if qtype == "i2_s":
        stored = float(s32)
    else:
        s16 = s32.astype(np.float16)
        if not np.isfinite(s16):
            return None
        stored = float(s16)
    data = np.empty(format_nbytes(qtype, (rows, cols)), dtype=np.uint8)
    heads = head_kernels(cols) if kernels is not None and x is not None else None
    codes = np.empty((rows, cols), dtype=np.int8) if heads is not None else None
    _pack(qtype, raw, table, stored, data, kernels, codes)
    cos_mean = cos_min = None
    if x is not None:
        xq, a = quantize_activations(x)
        outs = _native_outputs(heads, raw, codes, x, xq) if heads is not None and codes is not None else None
        if outs is None:
            if kernels is not None:  # the histogram did not compute them
                _histogram(raw, x, ref_out, kernels)
            outs = ref_out.T, _ternary_out(raw, table, xq)
        ref_t, tern_t = outs
        cos = cosine_rows((tern_t * np.float32(stored)) / a[:, None], ref_t)
        cos_mean, cos_min = float(cos.mean()), float(cos.min())
    return FastProjection(data, format_type_id(qtype), stored, _relative_error(hist, table, stored), cos_mean, cos_min)


def encode_f16(raw: np.ndarray) -> np.ndarray | None:
    """The F16 bytes (as ``<f2``) of a BF16 tensor, as ``recipe.encode_float`` writes them; None
    when some value is not finite in F16 (the reference path then raises its error)."""
    kernels = native_kernels() if raw.dtype == np.uint16 and raw.flags.c_contiguous else None
    if kernels is not None:
        bits, not_finite = kernels.lookup16(raw, _F16_BITS)
        return None if not_finite else bits.view("<f2")
    out = np.empty(raw.shape, dtype=np.uint16)
    flat_in, flat_out = raw.reshape(-1), out.reshape(-1)
    for i in range(0, flat_in.size, CHUNK_ELEMENTS):
        part = np.take(_F16_BITS, flat_in[i : i + CHUNK_ELEMENTS].astype(np.intp))
        if ((part & np.uint16(0x7C00)) == np.uint16(0x7C00)).any():
            return None
        flat_out[i : i + CHUNK_ELEMENTS] = part
    return out.view("<f2")
