"""The ternary linear algebra as MLX graphs: activation quantization and exact accumulation.

Exactness of float32 accumulation (why no integer matmul is needed)
-------------------------------------------------------------------
MLX has no integer matmul on every device, so ``x_q · qᵀ`` is computed in
float32 and is nonetheless *exact*:

1. The operands are integers: ``x_q ∈ [-128, 127]`` (exactly representable),
   and the dequantized weights are ``1.0 * c + (-1.0) = q ∈ {-1, 0, 1}``
   (``packing``). Kernels that factor the affine form instead compute
   ``1.0 * Σ x·c + (-1.0) * Σ x`` with ``c ∈ {0, 1, 2}``; Metal's 2-bit GEMV
   also pre-scales ``x`` by 1/4, 1/16, 1/64 against codes shifted by the same
   power of two, whose products are again the integers ``x·c``.
2. Whatever the summation order (blocking, SIMD lanes, FMA), every
   intermediate is then an integer of magnitude at most
   ``Σ|x|·2 + Σ|x| <= 384 · K`` for a chunk of ``K`` columns. With
   ``K <= K_CHUNK = 32768`` that is ``<= 12 582 912 < 2**24``.
3. Every integer of magnitude ``<= 2**24`` is a float32, and IEEE addition,
   multiplication and FMA return the exact result whenever it is
   representable, so no step rounds: each chunk's float32 result *is* the
   integer dot product.
4. Chunk results are converted to int32 (exact) and summed in int32;
   ``|acc| <= 128 · cols < 2**31`` because ``cols <= packing.MAX_COLS``.

The rescale ``acc * scale[r] / a[n]`` is then done in float32 in the
reference's order (``bitnet_sdk.ternary.ternary_linear``).

Two accumulation paths, both exact and both reading the packed weights:
``qmm`` (``mx.quantized_matmul``: the 2-bit codes are unpacked inside MLX's
fused kernel; the default everywhere) and ``unpack`` (a compiled
shift-and-mask graph expands one chunk to a transient float32 matrix, then an
ordinary float32 matmul through the BLAS MLX links: an option for prompts,
``LinearKernels(qmm_max_n=...)``, that only pays off with a fast BLAS).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import mlx.core as mx

from bitnet_mlx.packing import CODES_PER_WORD, PackedTernary
from bitnet_sdk.ternary import EPS

__all__ = ["K_CHUNK", "LinearKernels", "accumulate", "linear", "linear_int", "pad_columns", "quantize", "quantize_int8"]

#: Columns per float32 accumulation; see the module docstring for the bound.
K_CHUNK = 32768
assert 384 * K_CHUNK < 2**24 and K_CHUNK % 128 == 0

Statics = tuple[int, int, bool]  # (cols_padded, group_size, use_qmm)


def quantize(x: mx.array) -> tuple[mx.array, mx.array]:
    """Per-token absmax int8 of float32 ``x [n, k]``, as float32 integers, and ``a [n]``.

    The same float32 operations as ``bitnet_sdk.ternary.quantize_activations``:
    ``a = 127 / max(max|x|, EPS)``, ``round(x * a)`` half to even (``mx.round``
    rounds like ``np.round``), clipped to ``[-128, 127]``.
    """
    amax = mx.maximum(mx.max(mx.abs(x), axis=1), EPS)
    a = 127.0 / amax
    xq = mx.clip(mx.round(x * a[:, None]), -128.0, 127.0)
    return xq, a


def _unpack(words: mx.array) -> mx.array:
    """``uint32 [rows, w]`` codes → float32 ``[rows, 16 w]`` weights in {-1, 0, 1}."""
    shifts = mx.arange(0, 2 * CODES_PER_WORD, 2, dtype=mx.uint32)
    codes = (words[:, :, None] >> shifts) & 3
    return mx.flatten(codes, -2, -1).astype(mx.float32) - 1.0  # shape-free (shapeless compile)


def accumulate(
    xq: mx.array,
    packed: mx.array,
    scales: mx.array,
    biases: mx.array,
    statics: Statics,
) -> mx.array:
    """Exact ``int32 [n, rows]`` dot products of integer-valued float32 ``xq [n, cols_padded]``.

    ``xq`` must already be zero-padded to the packed width (``pad_columns``).
    """
    cols_padded, group, use_qmm = statics
    acc: mx.array | None = None
    for c0 in range(0, cols_padded, K_CHUNK):
        c1 = min(c0 + K_CHUNK, cols_padded)
        x_chunk = xq[:, c0:c1] if cols_padded > K_CHUNK else xq
        w_chunk = packed[:, c0 // CODES_PER_WORD : c1 // CODES_PER_WORD]
        if use_qmm:
            part = mx.quantized_matmul(
                x_chunk, w_chunk, scales[:, c0 // group : c1 // group],
                biases[:, c0 // group : c1 // group], transpose=True, group_size=group, bits=2,
            )
        else:
            part = x_chunk @ _unpack(w_chunk).T
        part = part.astype(mx.int32)
        acc = part if acc is None else acc + part
    assert acc is not None
    return acc


def pad_columns(x: mx.array, cols_padded: int) -> mx.array:
    """Zero-pad ``x [n, cols]`` to the packed width (outside compiled graphs: ``Pad``
    has no shape-free form). Zero columns change neither ``max|x|`` nor any sum."""
    extra = cols_padded - x.shape[1]
    return mx.pad(x, [(0, 0), (0, extra)]) if extra else x


def linear(
    x: mx.array, packed: mx.array, scales: mx.array, biases: mx.array, row_scale: mx.array,
    statics: Statics,
) -> mx.array:
    """BitNet linear: float32 ``x [n, cols_padded]`` → float32 ``[n, rows]`` (``ternary_linear``)."""
    xq, a = quantize(x)
    acc = accumulate(xq, packed, scales, biases, statics)
    return (acc.astype(mx.float32) * row_scale[None, :]) / a[:, None]


def linear_int(
    xq: mx.array, packed: mx.array, scales: mx.array, biases: mx.array, statics: Statics
) -> mx.array:
    """Exact ``int32 [n, rows]`` for int8 ``xq [n, cols_padded]`` (``ternary_matmul_int``)."""
    return accumulate(xq.astype(mx.float32), packed, scales, biases, statics)


def quantize_int8(x: mx.array) -> tuple[mx.array, mx.array]:
    """``quantize`` with the codes cast to int8 (the public ``quantize_activations`` op)."""
    xq, a = quantize(x)
    return xq.astype(mx.int8), a


class LinearKernels:
    """Compiled graphs per weight geometry, for one backend instance (one device).

    ``mx.compile`` fuses the element-wise work around the matmul (quantization,
    padding, unpacking, rescale) into few kernels and skips re-building the
    graph on every call. One compiled function exists per ``(kind, statics)``;
    a model has a handful of weight geometries, so the cache stays small. The
    functions are compiled ``shapeless``: a new token count reuses the trace
    instead of adding one per prompt length (padding, which has no shape-free
    form, runs before the compiled graph; rows longer than ``K_CHUNK`` are
    the exception, see ``_fn``). ``compile=False`` runs
    the same graphs eagerly (debugging, comparisons).
    """

    def __init__(self, *, compile: bool = True, qmm_max_n: int | None = None) -> None:
        self._compile = compile
        self._qmm_max_n = qmm_max_n
        self._cache: dict[tuple[str, Statics], Callable[..., object]] = {}
        self._quantize: Callable[..., object] = (
            mx.compile(quantize_int8, shapeless=True) if compile else quantize_int8
        )

    def statics(self, w: PackedTernary, n: int) -> Statics:
        """Geometry and path for ``n`` tokens: ``qmm`` unless ``n`` exceeds ``qmm_max_n``."""
        use_qmm = self._qmm_max_n is None or n <= self._qmm_max_n
        return (w.cols_padded, w.group_size, use_qmm)

    def _fn(self, kind: str, statics: Statics) -> Callable[..., object]:
        key = (kind, statics)
        fn = self._cache.get(key)
        if fn is None:
            base = linear if kind == "linear" else linear_int
            bound = partial(base, statics=statics)
            # Chunk slices have no shape-free form: multi-chunk rows (> K_CHUNK
            # columns, rare) get a trace per token count instead.
            fn = mx.compile(bound, shapeless=statics[0] <= K_CHUNK) if self._compile else bound
            self._cache[key] = fn
        return fn

    def linear(self, w: PackedTernary, x: mx.array) -> mx.array:
        fn = self._fn("linear", self.statics(w, x.shape[0]))
        return fn(pad_columns(x, w.cols_padded), w.packed, w.scales, w.biases, w.row_scale)  # type: ignore[return-value]

    def linear_int(self, w: PackedTernary, xq: mx.array) -> mx.array:
        fn = self._fn("linear_int", self.statics(w, xq.shape[0]))
        return fn(pad_columns(xq, w.cols_padded), w.packed, w.scales, w.biases)  # type: ignore[return-value]

    def quantize(self, x: mx.array) -> tuple[mx.array, mx.array]:
        return self._quantize(x)  # type: ignore[return-value]
