"""``KernelLibrary``: the compiled kernels of one ISA variant, callable on numpy arrays.

This is the whole public runtime of ``bitnet_kernels``: pick a variant, JIT
(or load from the disk cache) its module, and run matmuls, activation
quantization and element-wise ops across a thread pool. Arrays are checked
and converted here, so the kernels never see a wrong shape or dtype.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bitnet_kernels.compiler import CompileStats, JitModule, jit_module
from bitnet_kernels.isa import Isa, select_isa
from bitnet_kernels.layout import (
    BLOCK,
    HEAD_KINDS,
    ROW_GROUP,
    HeadMatrix,
    PackedTernary,
    aligned_empty,
    aligned_zeros,
    pack_ternary,
    padded,
)
from bitnet_kernels.module import KERNEL_RESULTS, KERNELS, PREFIX, build_kernel_module
from bitnet_kernels.threads import default_threads, get_pool, split_range

__all__ = ["KernelLibrary", "QuantizedActivations"]

log = logging.getLogger(__name__)

#: Below this many multiply-accumulates a matmul runs on the calling thread only:
#: handing slices to other threads costs tens of microseconds.
_PARALLEL_MIN_MACS = 1 << 23
#: Same for element-wise ops, in elements.
_PARALLEL_MIN_ELEMENTS = 1 << 16
_F32_KERNEL = {"gemv": "gemv_f32", "gemm": "gemm_f32"}
_I32_KERNEL = {"gemv": "gemv_i32", "gemm": "gemm_i32"}


@dataclass(frozen=True)
class QuantizedActivations:
    """Activations in the kernels' buffer layout.

    ``xq`` is int8 ``[tokens_padded, cols_padded]`` (zero padded), ``a`` the
    per-token scale (1 for padding tokens) and ``xsum`` the per-token sum of
    ``xq``. ``n``/``k`` are the logical token count and width.
    """

    xq: np.ndarray
    a: np.ndarray
    xsum: np.ndarray
    n: int
    k: int

    def unpadded(self) -> tuple[np.ndarray, np.ndarray]:
        """``(xq [n, k], a [n])`` as ``bitnet_sdk.ternary.quantize_activations`` returns."""
        return self.xq[: self.n, : self.k].copy(), self.a[: self.n].copy()


def _ptr(a: np.ndarray | None) -> int | None:
    """Data address of a contiguous array; ``from_buffer`` is 3× faster than numpy's
    ``__array_interface__`` but only takes writable buffers."""
    if a is None:
        return None
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))  # type: ignore[arg-type]  # numpy's stubs lack the buffer protocol
    except (TypeError, ValueError, BufferError):  # read-only or empty
        return a.__array_interface__["data"][0]


def _ptr_readonly(a: np.ndarray) -> int:
    """Data address of an array that may be read-only (memory-mapped weights)."""
    return a.__array_interface__["data"][0]


class _Scratch(threading.local):
    """Per-thread activation buffers of the matmul hot path, grown on demand and reused.

    Allocating aligned buffers and looking up their addresses costs several
    microseconds per call, as much as a small GEMV; the buffers never leave
    ``matmul``, and being thread-local they are safe for concurrent callers.
    """

    def __init__(self) -> None:
        self.tokens = 0
        self.cols = 0

    def get(self, tokens: int, cols: int) -> tuple[np.ndarray, int | None, int | None, int | None]:
        """``(xq [tokens, cols] view, xq address, a address, xsum address)``."""
        if tokens > self.tokens or cols > self.cols:
            self.tokens, self.cols = max(tokens, self.tokens), max(cols, self.cols)
            self.xq = aligned_empty(self.tokens * self.cols, np.int8)
            self.a = aligned_empty(self.tokens, np.float32)
            self.xsum = aligned_empty(self.tokens, np.int32)
            self.ptrs = (_ptr(self.xq), _ptr(self.a), _ptr(self.xsum))
        return (self.xq[: tokens * cols].reshape(tokens, cols), *self.ptrs)


def _quantize_head(w: np.ndarray, chunk: int = 4096) -> HeadMatrix:
    """Per-row absmax int8 of ``w``, a chunk of rows at a time (bounded temporary memory)."""
    rows = w.shape[0]
    q = aligned_empty(w.shape, np.int8)
    scale = np.empty(rows, dtype=np.float32)
    for i in range(0, rows, chunk):
        f = np.asarray(w[i : i + chunk], dtype=np.float32)
        m = np.max(np.abs(f), axis=1)
        with np.errstate(divide="ignore"):
            inv = np.where(m > 0, np.float32(127) / m, np.float32(0)).astype(np.float32)
        q[i : i + chunk] = np.clip(np.rint(f * inv[:, None]), -127, 127)
        scale[i : i + chunk] = m / np.float32(127)
    return HeadMatrix(q, scale, "i8")


class KernelLibrary:
    """JIT-compiled kernels for one ISA, run on ``num_threads`` threads.

    ``isa``: a variant name (see ``bitnet_kernels.isa.ISAS``), an ``Isa``, or
    ``None``/``"auto"`` for ``$BITNET_LLVM_ISA`` or the best the host runs.
    ``num_threads``: ``None`` for ``$BITNET_NUM_THREADS`` or all usable CPUs.
    ``use_cache``: read and write compiled objects in the disk cache.
    """

    _shared: dict[tuple[str, int], KernelLibrary] = {}  # noqa: RUF012 - process-wide cache
    _shared_lock = threading.Lock()

    def __init__(self, isa: str | Isa | None = None, num_threads: int | None = None,
                 *, use_cache: bool = True) -> None:  # fmt: skip
        self.isa = isa if isinstance(isa, Isa) else select_isa(isa)
        self.num_threads = default_threads(num_threads)
        self._jit: JitModule = jit_module(build_kernel_module(self.isa), self.isa, use_cache=use_cache)
        self._fns = {
            name: ctypes.CFUNCTYPE(KERNEL_RESULTS.get(name), *argtypes)(self._jit.address(PREFIX + name))
            for name, argtypes in KERNELS.items()
        }
        self._scratch = _Scratch()

    @classmethod
    def shared(cls, isa: str | Isa | None = None, num_threads: int | None = None) -> KernelLibrary:
        """One library per (variant, thread count) per process, built on first request."""
        resolved = isa if isinstance(isa, Isa) else select_isa(isa)
        threads = default_threads(num_threads)
        with cls._shared_lock:
            lib = cls._shared.get((resolved.name, threads))
            if lib is None:
                lib = cls._shared[(resolved.name, threads)] = cls(resolved, threads)
            return lib

    @property
    def compile_stats(self) -> CompileStats:
        return self._jit.stats

    def __repr__(self) -> str:
        return f"<KernelLibrary isa={self.isa.name} threads={self.num_threads}>"

    # -- weights and activations ---------------------------------------------------

    def pack(self, q: np.ndarray, scale: np.ndarray) -> PackedTernary:
        """Repack ternary weights into the kernels' layout (see ``bitnet_kernels.layout``).

        Same bytes as the numpy reference ``pack_ternary``, in one native pass
        per row slice. ``ValueError`` for values outside {-1, 0, 1}.
        """
        q = np.asarray(q)
        if q.dtype != np.int8 or q.ndim != 2 or 0 in q.shape:
            return pack_ternary(q, scale)  # the reference: validates other dtypes, raises on shapes
        if q.strides[1] != 1 or q.strides[0] < q.shape[1]:
            q = np.ascontiguousarray(q)
        rows, cols = q.shape
        rp, kp = padded(rows, ROW_GROUP), padded(cols, BLOCK)
        data = aligned_empty(rp * kp // 4, np.uint8)
        sc = aligned_zeros(rp, np.float32)
        sc[:rows] = np.asarray(scale, dtype=np.float32).reshape(rows)
        fn, bad = self._fns["pack"], []
        args = (_ptr_readonly(q), q.strides[0], rows, cols, _ptr(data), kp // BLOCK)

        def run(begin: int, end: int) -> None:
            if fn(*args, begin, end):
                bad.append((begin, end))

        parts = self.num_threads if q.size >= _PARALLEL_MIN_MACS else 1
        get_pool(self.num_threads).run(run, split_range(0, rp, parts, ROW_GROUP))
        if bad:
            raise ValueError("q holds values outside {-1, 0, 1}")
        return PackedTernary(data, sc, (rows, cols))

    def token_tile(self, n: int) -> tuple[str, int]:
        """Kernel family and token padding for ``n`` tokens (GEMV under one full GEMM tile)."""
        gemm_tokens = self.isa.gemm_tile[1]
        if n < gemm_tokens:
            return "gemv", self.isa.gemv_tile[1]
        return "gemm", gemm_tokens

    def quantize(self, x: np.ndarray, token_multiple: int = 1) -> QuantizedActivations:
        """Per-token absmax int8 of float32 ``x [n, k]``, padded for the GEMM kernels."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"activations must be 2-D [tokens, features], got shape {x.shape}")
        n, k = x.shape
        np_, kp = padded(n, token_multiple), padded(k, BLOCK)
        xq = aligned_empty((np_, kp), np.int8)
        a = np.ones(np_, dtype=np.float32)
        xsum = np.zeros(np_, dtype=np.int32)
        if np_ > n:
            xq[n:] = 0
        fn = self._fns["quantize"]
        args = (_ptr(x), k, k, _ptr(xq), kp, _ptr(a), _ptr(xsum))
        parts = self.num_threads if n * k >= _PARALLEL_MIN_ELEMENTS else 1
        get_pool(self.num_threads).run(lambda b, e: fn(*args, b, e), split_range(0, n, parts, 1))
        return QuantizedActivations(xq, a, xsum, n, k)

    def quantize_activations(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as ``bitnet_sdk.ternary.quantize_activations``: ``(xq [n, k], a [n])``."""
        return self.quantize(x).unpadded()

    # -- matmuls ---------------------------------------------------------------------

    def matmul(self, w: PackedTernary, x: np.ndarray) -> np.ndarray:
        """BitNet linear: float32 ``x [n, cols]`` → float32 ``[n, rows]`` (reference-exact)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._check_x(w, x)
        n, k = x.shape
        family, tokens = self.token_tile(n)
        ntok_padded, kp = padded(n, tokens), w.cols_padded
        xq, xq_ptr, a_ptr, xsum_ptr = self._scratch.get(ntok_padded, kp)
        if ntok_padded > n:
            xq[n:] = 0
        quantize = self._fns["quantize"]
        head = (_ptr(x), k, k, xq_ptr, kp, a_ptr, xsum_ptr)
        if n * k < _PARALLEL_MIN_ELEMENTS:
            quantize(*head, 0, n)
        else:
            get_pool(self.num_threads).run(
                lambda b, e: quantize(*head, b, e), split_range(0, n, self.num_threads, 1))
        out = np.empty((n, w.rows), dtype=np.float32)
        self._gemm(_F32_KERNEL[family], w, xq_ptr, xsum_ptr, a_ptr, out, n, ntok_padded)
        return out

    def matmul_int(self, w: PackedTernary, xq: np.ndarray) -> np.ndarray:
        """Exact int32 ``[n, rows]`` accumulations for int8 ``xq [n, cols]``."""
        xq = np.asarray(xq)
        if xq.dtype != np.int8:
            raise TypeError(f"xq must be int8, got {xq.dtype}")
        self._check_x(w, xq)
        n, k = xq.shape
        family, tokens = self.token_tile(n)
        buf = aligned_zeros((padded(n, tokens), w.cols_padded), np.int8)
        buf[:n, :k] = xq
        xsum = np.zeros(buf.shape[0], dtype=np.int32)
        xsum[:n] = xq.sum(axis=1, dtype=np.int32)
        out = np.empty((n, w.rows), dtype=np.int32)
        self._gemm(_I32_KERNEL[family], w, _ptr(buf), _ptr(xsum), None, out, n, buf.shape[0])
        return out

    @staticmethod
    def _check_x(w: PackedTernary, x: np.ndarray) -> None:
        if not isinstance(w, PackedTernary):
            raise TypeError(f"weights must be a PackedTernary (from pack()), got {type(w).__name__}")
        if x.ndim != 2 or x.shape[1] != w.cols:
            raise ValueError(f"activations of shape {x.shape} do not match weights {w.shape}")

    def _gemm(self, kernel: str, w: PackedTernary, xq: int | None, xsum: int | None,
              a: int | None, out: np.ndarray, n: int, ntok_padded: int) -> None:  # fmt: skip
        """Run ``kernel`` on buffer addresses, rows split over the pool when worth it."""
        if n == 0:
            return
        fn = self._fns[kernel]
        w_ptr, scale_ptr = w.pointers
        head = (w_ptr, xq, xsum, scale_ptr, a, _ptr(out), w.nblocks, w.rows)
        tail = (ntok_padded, n, w.rows)
        if w.rows_padded * w.cols_padded * ntok_padded < _PARALLEL_MIN_MACS or self.num_threads == 1:
            fn(*head, 0, w.rows_padded, *tail)
            return
        slices = split_range(0, w.rows_padded, self.num_threads, ROW_GROUP)
        get_pool(self.num_threads).run(lambda b, e: fn(*head, b, e, *tail), slices)

    # -- output head -------------------------------------------------------------------

    def prepare_head(self, w: np.ndarray, kind: str = "native") -> HeadMatrix:
        """The output head ``w [rows, cols]`` for ``head``.

        ``kind="native"`` keeps float16/bfloat16/float32 as they are (no copy when
        ``w`` is contiguous: a view of the model file stays a view); other
        float types become float32. ``kind="int8"`` quantizes each row to
        int8 with a float32 scale (absmax / 127, rounded half to even).
        """
        w = np.asarray(w)
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"the head must be a non-empty 2-D matrix, got shape {w.shape}")
        if kind == "int8":
            return _quantize_head(w)
        if kind != "native":
            raise ValueError(f"head kind must be 'native' or 'int8', got {kind!r}")
        if w.dtype not in HEAD_KINDS or w.dtype == np.int8:
            w = w.astype(np.float32)
        w = np.ascontiguousarray(w)
        return HeadMatrix(w, None, HEAD_KINDS[w.dtype])

    def head(self, h: HeadMatrix, x: np.ndarray) -> np.ndarray:
        """``x [n, cols] @ w.T`` → float32 ``[n, rows]`` (times the row scales for int8)."""
        if not isinstance(h, HeadMatrix):
            raise TypeError(f"head takes a HeadMatrix (from prepare_head()), got {type(h).__name__}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, d = h.shape
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"activations of shape {x.shape} do not match the head {h.shape}")
        n = x.shape[0]
        if d % self.isa.float_lanes:  # the kernels step whole vectors along d
            out = x @ h.data.astype(np.float32).T
            return out * h.scale if h.scale is not None else out
        out = np.empty((n, rows), dtype=np.float32)
        if n == 0:
            return out
        fn = self._fns[f"head_{h.kind}"]
        w_ptr, s_ptr = h.pointers
        head_args = (w_ptr, s_ptr, _ptr(x), _ptr(out), d, rows)
        parts = self.num_threads if rows * d * n >= _PARALLEL_MIN_MACS // 8 else 1
        get_pool(self.num_threads).run(
            lambda b, e: fn(*head_args, b, e, n), split_range(0, rows, parts, ROW_GROUP))
        return out

    # -- element-wise ----------------------------------------------------------------

    def rms_norm(self, x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
        """RMSNorm over the last axis (any leading shape)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        w = np.ascontiguousarray(weight, dtype=np.float32)
        d = x.shape[-1]
        if w.shape != (d,):
            raise ValueError(f"weight of shape {w.shape} does not match rows of length {d}")
        out = np.empty_like(x)
        fn = self._fns["rms_norm"]
        args = (_ptr(x), _ptr(w), _ptr(out), d, ctypes.c_float(eps))
        self._rows(lambda b, e: fn(*args, b, e), x.size // max(d, 1), d)
        return out

    def softmax(self, x: np.ndarray) -> np.ndarray:
        """Softmax over the last axis (any leading shape)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty_like(x)
        d = x.shape[-1]
        fn = self._fns["softmax"]
        self._rows(lambda b, e: fn(_ptr(x), _ptr(out), d, b, e), x.size // max(d, 1), d)
        return out

    def silu(self, x: np.ndarray) -> np.ndarray:
        """``x * sigmoid(x)`` element-wise."""
        return self._map("silu", x)

    def relu2(self, x: np.ndarray) -> np.ndarray:
        """``max(x, 0)²`` element-wise."""
        return self._map("relu2", x)

    def _map(self, kernel: str, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty_like(x)
        fn = self._fns[kernel]
        self._rows(lambda b, e: fn(_ptr(x), _ptr(out), b, e), x.size, 1)
        return out

    def _rows(self, call: Callable[[int, int], None], nrows: int, row_len: int) -> None:
        if nrows * row_len < _PARALLEL_MIN_ELEMENTS or self.num_threads == 1:
            call(0, nrows)
            return
        align = 1 if row_len > 1 else 64  # flat maps: slices of whole cache lines
        get_pool(self.num_threads).run(call, split_range(0, nrows, self.num_threads, align))
