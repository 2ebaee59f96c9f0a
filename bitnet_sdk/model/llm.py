"""The BitNet b1.58 forward pass, block by block, as llama.cpp's ``bitnet`` graph.

Per layer (llama.cpp ``src/models/bitnet.cpp``)::

    h   = x + Wo · subnorm_attn(attention(rope(Wq·n), rope(Wk·n), Wv·n)),  n = norm_attn(x)
    out = h + Wdown · subnorm_ffn(act(Wgate·m) * (Wup·m)),                 m = norm_ffn(h)

then ``logits = E · norm_out(x)`` with the output matrix tied to the token
embedding ``E``. Every projection is ternary (per-token int8 activations,
``Backend.matmul``); every norm is RMSNorm with the file's epsilon. Rotary
embeddings are NEOX-style for every BitNet file (llama.cpp returns
``LLAMA_ROPE_TYPE_NEOX`` for ``LLM_ARCH_BITNET``; ``cfg.rope_neox``) over the
first ``rope_dim`` dimensions of each head, and
attention is scaled by ``1/sqrt(head_dim)``. The gate activation is squared
ReLU for ``hidden_act == "relu2"`` (BitNet b1.58 2B-4T) and SiLU otherwise,
llama.cpp's default when the file does not say.

All float work is float32. A prompt of ``n`` tokens goes through as one GEMM
per weight; generation is the same code with ``n == 1``.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Any, Protocol

import numpy as np

from bitnet_sdk.backends.base import Backend
from bitnet_sdk.model.kv_cache import KVCache
from bitnet_sdk.model.weights import LayerWeights, ModelWeights

__all__ = [
    "HEAD_TILE",
    "ForwardConfig",
    "attention_block",
    "embed",
    "ffn_block",
    "forward",
    "output_head",
    "row_products",
]

#: Vocabulary rows per product of the output head (a float32 tile fits a core's L2 cache).
HEAD_TILE = 256


class ForwardConfig(Protocol):
    """The hyperparameters the forward pass reads (``ModelConfig`` provides them)."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    rms_eps: float
    rope_theta: float
    rope_neox: bool
    rope_dim: int
    hidden_act: str


def embed(weights: ModelWeights[Any], token_ids: np.ndarray) -> np.ndarray:
    """Rows of the token embedding: ``[n]`` ids → ``[n, d_model]`` float32."""
    return np.ascontiguousarray(weights.token_embd[token_ids], dtype=np.float32)


def _rope(backend: Backend, x: np.ndarray, positions: np.ndarray, cfg: ForwardConfig) -> np.ndarray:
    """Rotary embedding of ``x [n, heads, head_dim]`` over the first ``rope_dim`` dims."""
    if cfg.rope_dim == cfg.head_dim:
        return backend.rope(x, positions, cfg.rope_theta, cfg.rope_neox)
    out = x.copy()
    out[..., : cfg.rope_dim] = backend.rope(
        np.ascontiguousarray(x[..., : cfg.rope_dim]), positions, cfg.rope_theta, cfg.rope_neox
    )
    return out


def attention_block(
    x: np.ndarray,
    layer: LayerWeights[Any],
    layer_idx: int,
    cfg: ForwardConfig,
    backend: Backend,
    cache: KVCache,
    positions: np.ndarray,
) -> np.ndarray:
    """Self-attention sub-block: ``x [n, d_model]`` → residual update ``[n, d_model]``.

    Writes this layer's keys and values for ``positions`` into ``cache``; the
    queries then attend causally to everything cached up to their position.
    """
    n = x.shape[0]
    d_q, d_kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    h = backend.rms_norm(x, layer.attn_norm, cfg.rms_eps)  # [n, d_model]
    qkv = backend.matmul(layer.wqkv, h)  # [n, d_q + 2 * d_kv]
    q = qkv[:, :d_q].reshape(n, cfg.n_heads, cfg.head_dim)
    k = qkv[:, d_q : d_q + d_kv].reshape(n, cfg.n_kv_heads, cfg.head_dim)
    v = qkv[:, d_q + d_kv :].reshape(n, cfg.n_kv_heads, cfg.head_dim)
    q = _rope(backend, q, positions, cfg)
    k = _rope(backend, k, positions, cfg)
    k_all, v_all = cache.update(layer_idx, int(positions[0]), k, v)  # [t, n_kv_heads, head_dim]
    att = backend.attention(q, k_all, v_all, positions)  # [n, n_heads, head_dim]
    att = backend.rms_norm(att.reshape(n, d_q), layer.attn_sub_norm, cfg.rms_eps)
    return backend.matmul(layer.wo, att)  # [n, d_model]


def ffn_block(
    x: np.ndarray, layer: LayerWeights[Any], cfg: ForwardConfig, backend: Backend
) -> np.ndarray:
    """Gated feed-forward sub-block: ``x [n, d_model]`` → residual update ``[n, d_model]``."""
    h = backend.rms_norm(x, layer.ffn_norm, cfg.rms_eps)  # [n, d_model]
    gate_up = backend.matmul(layer.w_gate_up, h)  # [n, 2 * d_ff]
    gate, up = gate_up[:, : cfg.d_ff], gate_up[:, cfg.d_ff :]
    act = backend.relu2(gate) if cfg.hidden_act == "relu2" else backend.silu(gate)
    m = backend.rms_norm(act * up, layer.ffn_sub_norm, cfg.rms_eps)  # [n, d_ff]
    return backend.matmul(layer.w_down, m)  # [n, d_model]


def output_head(
    x: np.ndarray, weights: ModelWeights[Any], cfg: ForwardConfig, backend: Backend
) -> np.ndarray:
    """Final norm and (tied) output projection: ``[n, d_model]`` → logits ``[n, vocab]``.

    Each row's logits are computed the same way whatever ``n`` (see
    :func:`row_products`), so a sequence decoded in a batch gets exactly the
    logits it gets alone.
    """
    h = backend.rms_norm(x, weights.output_norm, cfg.rms_eps)
    return row_products(np.ascontiguousarray(h, dtype=np.float32), weights.output)


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


def forward(
    weights: ModelWeights[Any],
    cfg: ForwardConfig,
    backend: Backend,
    token_ids: np.ndarray,
    start_pos: int,
    cache: KVCache,
    *,
    last_only: bool = False,
) -> np.ndarray:
    """Run ``token_ids [n]`` at positions ``start_pos ..`` and return float32 logits.

    The logits are ``[n, vocab]``, one row per input position, or ``[1, vocab]``
    for the last position only with ``last_only`` (what generation needs; it
    skips ``n - 1`` rows of the largest matmul). The cache must hold exactly
    the first ``start_pos`` positions of the sequence (or more, which are then
    overwritten).
    """
    token_ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
    n = token_ids.shape[0]
    if n == 0:
        raise ValueError("forward needs at least one token")
    vocab = weights.token_embd.shape[0]
    if token_ids.min() < 0 or token_ids.max() >= vocab:
        raise ValueError(f"token ids must be in [0, {vocab}), got {token_ids.min()}..{token_ids.max()}")
    positions = np.arange(start_pos, start_pos + n, dtype=np.int64)
    x = embed(weights, token_ids)  # [n, d_model]
    for i, layer in enumerate(weights.layers):
        x = x + attention_block(x, layer, i, cfg, backend, cache, positions)
        x = x + ffn_block(x, layer, cfg, backend)
    if last_only:
        x = x[-1:]
    return output_head(x, weights, cfg, backend)


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
