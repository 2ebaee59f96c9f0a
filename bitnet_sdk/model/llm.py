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

from typing import Any, Protocol

import numpy as np

from bitnet_sdk.backends.base import Backend, ForwardStep
from bitnet_sdk.model.kv_cache import KVCache
from bitnet_sdk.model.weights import LayerWeights, ModelWeights

__all__ = ["ForwardConfig", "attention_block", "embed", "ffn_block", "forward", "output_head"]


class ForwardConfig(Protocol):
    """The hyperparameters the forward pass reads (``ModelConfig`` provides them)."""

    @property
    def n_layers(self) -> int: ...
    @property
    def d_model(self) -> int: ...
    @property
    def n_heads(self) -> int: ...
    @property
    def n_kv_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def d_ff(self) -> int: ...
    @property
    def rms_eps(self) -> float: ...
    @property
    def rope_theta(self) -> float: ...
    @property
    def rope_neox(self) -> bool: ...
    @property
    def rope_dim(self) -> int: ...
    @property
    def hidden_act(self) -> str: ...


def embed(weights: ModelWeights[Any], token_ids: np.ndarray) -> np.ndarray:
    """Rows of the token embedding (kept in the file's float type): ``[n]`` ids → ``[n, d_model]`` float32."""
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
    # queries and keys rotate in one call (RoPE acts on each head alone)
    qk = _rope(backend, qkv[:, : d_q + d_kv].reshape(n, cfg.n_heads + cfg.n_kv_heads, cfg.head_dim), positions, cfg)
    q, k = qk[:, : cfg.n_heads], qk[:, cfg.n_heads :]
    v = qkv[:, d_q + d_kv :].reshape(n, cfg.n_kv_heads, cfg.head_dim)
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

    ``weights.output`` is what ``backend.prepare_head`` made of the file's
    matrix (or the matrix itself when the weights were loaded without it).
    """
    h = backend.rms_norm(x, weights.output_norm, cfg.rms_eps)
    return backend.head(weights.output, h)


def forward(
    weights: ModelWeights[Any],
    cfg: ForwardConfig,
    backend: Backend,
    token_ids: np.ndarray,
    start_pos: int,
    cache: KVCache,
    *,
    last_only: bool = False,
    step: ForwardStep | None = None,
) -> np.ndarray:
    """Run ``token_ids [n]`` at positions ``start_pos ..`` and return float32 logits.

    The logits are ``[n, vocab]``, one row per input position, or ``[1, vocab]``
    for the last position only with ``last_only`` (what generation needs; it
    skips ``n - 1`` rows of the largest matmul). The cache must hold exactly
    the first ``start_pos`` positions of the sequence (or more, which are then
    overwritten). ``step`` is the backend's fused forward pass
    (``Backend.compile_forward``): after the checks here it runs instead of
    the per-op code below, which defines what it must compute.
    """
    token_ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
    n = token_ids.shape[0]
    if n == 0:
        raise ValueError("forward needs at least one token")
    vocab = int(weights.token_embd.shape[0])
    if token_ids.min() < 0 or token_ids.max() >= vocab:
        raise ValueError(f"token ids must be in [0, {vocab}), got {token_ids.min()}..{token_ids.max()}")
    if step is not None:
        return step(token_ids, start_pos, cache, last_only)
    positions = np.arange(start_pos, start_pos + n, dtype=np.int64)
    x = embed(weights, token_ids)  # [n, d_model]
    for i, layer in enumerate(weights.layers):
        x = x + attention_block(x, layer, i, cfg, backend, cache, positions)
        x = x + ffn_block(x, layer, cfg, backend)
    if last_only:
        x = x[-1:]
    return output_head(x, weights, cfg, backend)
