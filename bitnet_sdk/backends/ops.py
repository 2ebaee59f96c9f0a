"""Float layer operations of a BitNet block, in plain numpy (the reference).

Backends may replace any of these with fused versions (see
``bitnet_sdk.backends.base.Backend``); the results must agree within float32
rounding. Shapes: ``n`` tokens, ``h`` query heads, ``hkv`` key/value heads,
``d`` head dimension, ``t`` cached positions.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

import numpy as np

__all__ = ["HEAD_TILE", "attention", "relu2", "rms_norm", "rope", "row_products", "silu", "softmax"]

#: Vocabulary rows per product of the output head (a float32 tile fits a core's L2 cache).
HEAD_TILE = 256


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """RMSNorm over the last axis: ``x / sqrt(mean(x²) + eps) * weight``."""
    x = np.asarray(x, dtype=np.float32)
    ms = np.mean(np.square(x, dtype=np.float32), axis=-1, keepdims=True, dtype=np.float32)
    return (x / np.sqrt(ms + np.float32(eps))) * weight


def rope(x: np.ndarray, positions: np.ndarray, theta: float, neox: bool) -> np.ndarray:
    """Rotary position embedding of ``x [n, h, d]`` at ``positions [n]``.

    ``neox=False`` rotates consecutive pairs ``(x[2i], x[2i+1])`` (llama.cpp's
    ``LLAMA_ROPE_TYPE_NORM``); ``neox=True`` rotates ``(x[i], x[i + d/2])``
    (GPT-NeoX / Hugging Face ``rotate_half``).
    """
    n, _, d = x.shape
    inv_freq = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)  # [d/2]
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]  # [n, d/2]
    cos = np.cos(ang).astype(np.float32)[:, None, :]  # [n, 1, d/2]
    sin = np.sin(ang).astype(np.float32)[:, None, :]
    if neox:
        a, b = x[..., : d // 2], x[..., d // 2 :]
    else:
        a, b = x[..., 0::2], x[..., 1::2]
    ra, rb = a * cos - b * sin, a * sin + b * cos
    out = np.empty_like(x, dtype=np.float32)
    if neox:
        out[..., : d // 2], out[..., d // 2 :] = ra, rb
    else:
        out[..., 0::2], out[..., 1::2] = ra, rb
    assert out.shape == (n, x.shape[1], d)
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float32."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, q_positions: np.ndarray
) -> np.ndarray:
    """Causal grouped-query attention.

    ``q [n, h, d]`` are queries at absolute ``q_positions [n]``; ``k, v [t, hkv, d]``
    hold the keys and values of positions ``0 .. t-1`` (the KV cache, including
    the current tokens). A query at position ``p`` sees keys ``0 .. p``. Query
    head ``j`` reads key/value head ``j // (h // hkv)``. Returns ``[n, h, d]``
    float32 (keys and values may be float16: an F16 KV cache).

    Each key/value head is read once for its whole query group: two batched
    matrix products over the K/V heads (``[hkv, group·n, d] @ [hkv, d, t]`` and
    ``[hkv, group·n, t] @ [hkv, t, d]``) on strided views of the cache. Nothing
    is repeated or copied per query head, and the cost grows linearly with the
    cached positions.
    """
    n, h, d = q.shape
    t, hkv, _ = k.shape
    group = h // hkv
    # [n, hkv, group, d] -> [hkv, group * n, d]: rows of one K/V head's query group
    qg = np.asarray(q, dtype=np.float32).reshape(n, hkv, group, d).transpose(1, 2, 0, 3).reshape(hkv, group * n, d)
    if k.dtype != np.float32:  # an F16 cache
        k, v = k.astype(np.float32), v.astype(np.float32)
    scores = np.matmul(qg, k.transpose(1, 2, 0)) / np.float32(np.sqrt(d))  # [hkv, group * n, t]
    if np.min(q_positions) < t - 1:  # a decode step sees every key: no mask
        mask = np.arange(t)[None, :] > np.asarray(q_positions)[:, None]  # [n, t]
        scores = np.where(np.tile(mask, (group, 1))[None], np.float32(-np.inf), scores)
    out = np.matmul(softmax(scores, axis=-1), v.transpose(1, 0, 2))  # [hkv, group * n, d]
    return np.ascontiguousarray(out.reshape(hkv, group, n, d).transpose(2, 0, 1, 3)).reshape(n, h, d)


def silu(x: np.ndarray) -> np.ndarray:
    """SiLU, ``x * sigmoid(x)``: LLaMA's gate activation.

    For very negative ``x``, ``exp(-x)`` overflows to inf and the quotient is the exact
    limit (-0.0): the overflow is expected, so it is not reported as a warning (a warning
    would become an error wherever warnings are errors, as in the test suite).
    """
    with np.errstate(over="ignore"):
        return x / (np.float32(1.0) + np.exp(-x))


def relu2(x: np.ndarray) -> np.ndarray:
    """Squared ReLU, BitNet b1.58 2B-4T's gate activation."""
    r = np.maximum(x, np.float32(0.0))
    return r * r


def row_products(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``h [n, d] @ w[vocab, d].T`` in float32, each row independent of the others.

    One BLAS call over all rows would sum a row in an order that depends on
    the row count (a GEMV for one row, small-matrix or blocked GEMM kernels for
    more). Here every product is one fixed-shape GEMV of a :data:`HEAD_TILE`-row
    tile of ``w`` with one row of ``h``, tiles outermost, so a tile is read from
    memory once and reused from cache for every row: one row costs a plain
    GEMV, many about a GEMM. The tiles are split between the cores (numpy
    releases the GIL); the split does not change any product.
    """
    n, d = h.shape
    vocab = w.shape[0]
    full = vocab // HEAD_TILE * HEAD_TILE
    tiles = w[:full].reshape(-1, HEAD_TILE, d)  # [t, T, d]
    prod = np.empty((tiles.shape[0], n, HEAD_TILE, 1), dtype=np.float32)  # [t, n, T, 1]

    def part(lo: int, hi: int) -> None:
        np.matmul(tiles[lo:hi, None], h[None, :, :, None], out=prod[lo:hi])

    pool, parts = _head_pool()
    bounds = np.linspace(0, tiles.shape[0], parts + 1).astype(int)
    if pool is None or tiles.shape[0] < 2 * parts:
        part(0, tiles.shape[0])
    else:
        list(pool.map(part, bounds[:-1], bounds[1:]))
    out = np.empty((n, vocab), dtype=np.float32)
    out[:, :full] = prod[..., 0].transpose(1, 0, 2).reshape(n, full)
    if full < vocab:
        out[:, full:] = np.matmul(w[None, full:], h[:, :, None])[..., 0]  # [n, rest]
    return out


_HEAD_POOL: tuple[concurrent.futures.ThreadPoolExecutor | None, int] | None = None
_HEAD_POOL_LOCK = threading.Lock()


def _head_pool() -> tuple[concurrent.futures.ThreadPoolExecutor | None, int]:
    """Threads for the output head: ``BITNET_NUM_THREADS`` or every usable CPU."""
    global _HEAD_POOL
    with _HEAD_POOL_LOCK:
        if _HEAD_POOL is None:
            threads = int(os.environ.get("BITNET_NUM_THREADS") or len(os.sched_getaffinity(0))
                          if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
            pool = (concurrent.futures.ThreadPoolExecutor(threads, "bitnet-head")
                    if threads > 1 else None)
            _HEAD_POOL = (pool, max(1, threads))
        return _HEAD_POOL
