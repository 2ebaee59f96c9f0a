"""One forward step for many sequences at once: the runtime side of continuous batching.

A server decoding ``B`` sequences one at a time reads every weight ``B`` times
per step; the ternary kernels are far faster per token when several tokens
share one pass over the weights (the prompt path already relies on it). So a
step takes a list of :class:`SeqChunk` — one decode token of a running
sequence, or a chunk of a prompt (chunked prefill) — and runs them together::

    x     = embed(all tokens)                                   [N, d_model], N = Σ chunk lengths
    per layer:
      qkv = Wqkv · norm_attn(x)                                 one GEMM over all N tokens
      q,k = rope(q, k) at each token's own position
      att = attention(q_s, K_s, V_s) for each sequence s        over its own KV cache
      x  += Wo · subnorm_attn(att)                              one GEMM
      x  += Wdown · subnorm_ffn(act(Wgate·m) * (Wup·m))         two GEMMs, m = norm_ffn(x)
    logits = output_head(last row of each chunk that asks)      [B', vocab], row by row

Every operation is either per token (norms, rope, activations, and the
projections: activations are quantized per token and accumulated in int32)
or per sequence (attention), so a sequence's numbers do not depend on what
else is in the step. Two float products could: the attention of a sequence
is computed exactly as :func:`bitnet_sdk.model.llm.forward` computes it for the
same chunk; the output head (``Backend.head``, whose fallback is
:func:`~bitnet_sdk.backends.ops.row_products`) computes each row independently
of the others. The result: a sequence's logits are bitwise the same alone or
in any batch, on backends whose per-token ops are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bitnet_sdk.backends.base import Backend
from bitnet_sdk.model.kv_cache import KVCache
from bitnet_sdk.model.llm import ForwardConfig, _rope, embed, ffn_block, output_head
from bitnet_sdk.model.weights import LayerWeights, ModelWeights

__all__ = ["SeqChunk", "forward_batch", "fused_step_is_exact"]

@dataclass(frozen=True)
class SeqChunk:
    """One sequence's part of a step: ``token_ids [m]`` at positions ``start_pos ..``.

    ``cache`` is that sequence's own KV cache, holding exactly its first
    ``start_pos`` positions. ``logits``: whether the step returns the logits
    of the chunk's last token (a decode token and a prompt's last chunk do).
    """

    token_ids: np.ndarray
    start_pos: int
    cache: KVCache
    logits: bool = True


def _check(chunks: Sequence[SeqChunk], vocab: int) -> None:
    if not chunks:
        raise ValueError("forward_batch needs at least one chunk")
    caches = [id(c.cache) for c in chunks]
    if len(set(caches)) != len(caches):
        raise ValueError("each chunk of a step must have its own KV cache")
    for c in chunks:
        ids = c.token_ids
        if ids.ndim != 1 or ids.shape[0] == 0:
            raise ValueError("every chunk needs at least one token")
        if ids.min() < 0 or ids.max() >= vocab:
            raise ValueError(f"token ids must be in [0, {vocab}), got {ids.min()}..{ids.max()}")


def batched_attention_block(
    x: np.ndarray,
    layer: LayerWeights[Any],
    layer_idx: int,
    cfg: ForwardConfig,
    backend: Backend,
    chunks: Sequence[SeqChunk],
    positions: np.ndarray,
    bounds: Sequence[tuple[int, int]],
) -> np.ndarray:
    """Self-attention for the whole step: ``x [N, d_model]`` → residual update ``[N, d_model]``.

    The projections run once over all ``N`` tokens; each sequence's rows
    ``bounds[s] = (lo, hi)`` write their keys and values into its own cache and
    attend to its history only.
    """
    n = x.shape[0]
    d_q, d_kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    h = backend.rms_norm(x, layer.attn_norm, cfg.rms_eps)  # [N, d_model]
    qkv = backend.matmul(layer.wqkv, h)  # [N, d_q + 2 * d_kv]
    q = _rope(backend, qkv[:, :d_q].reshape(n, cfg.n_heads, cfg.head_dim), positions, cfg)
    k = _rope(backend, qkv[:, d_q : d_q + d_kv].reshape(n, cfg.n_kv_heads, cfg.head_dim),
              positions, cfg)
    v = qkv[:, d_q + d_kv :].reshape(n, cfg.n_kv_heads, cfg.head_dim)
    att = np.empty((n, cfg.n_heads, cfg.head_dim), dtype=np.float32)
    for chunk, (lo, hi) in zip(chunks, bounds, strict=True):
        k_all, v_all = chunk.cache.update(layer_idx, chunk.start_pos, k[lo:hi], v[lo:hi])
        att[lo:hi] = backend.attention(q[lo:hi], k_all, v_all, positions[lo:hi])  # [m, h, d]
    out = backend.rms_norm(att.reshape(n, d_q), layer.attn_sub_norm, cfg.rms_eps)
    return backend.matmul(layer.wo, out)  # [N, d_model]


def forward_batch(
    weights: ModelWeights[Any],
    cfg: ForwardConfig,
    backend: Backend,
    chunks: Sequence[SeqChunk],
) -> list[np.ndarray | None]:
    """Run one step for every chunk; float32 logits ``[vocab]`` per chunk that asks, else None.

    Each chunk's cache must hold exactly its first ``start_pos`` positions and
    belong to that chunk alone. On an error (a cache past its context window,
    say) no cache has advanced: caches advance when their last layer is written.
    """
    chunks = [SeqChunk(np.asarray(c.token_ids, dtype=np.int64).reshape(-1), c.start_pos,
                       c.cache, c.logits) for c in chunks]
    _check(chunks, weights.token_embd.shape[0])
    lengths = [c.token_ids.shape[0] for c in chunks]
    ends = np.cumsum(lengths)
    bounds = [(int(e) - m, int(e)) for e, m in zip(ends, lengths, strict=True)]
    positions = np.concatenate(
        [np.arange(c.start_pos, c.start_pos + m, dtype=np.int64) for c, m in zip(chunks, lengths,
                                                                                  strict=True)])
    for c, m in zip(chunks, lengths, strict=True):
        if c.start_pos + m > c.cache.max_positions:  # checked before any cache is written
            from bitnet_sdk.model.kv_cache import ContextOverflowError

            raise ContextOverflowError(
                f"{c.start_pos + m} positions exceed the context window of {c.cache.max_positions}")
    x = embed(weights, np.concatenate([c.token_ids for c in chunks]))  # [N, d_model]
    for i, layer in enumerate(weights.layers):
        x = x + batched_attention_block(x, layer, i, cfg, backend, chunks, positions, bounds)
        x = x + ffn_block(x, layer, cfg, backend)
    wanted = [s for s, c in enumerate(chunks) if c.logits]
    result: list[np.ndarray | None] = [None] * len(chunks)
    if wanted:
        logits = output_head(x[[bounds[s][1] - 1 for s in wanted]], weights, cfg, backend)
        for row, s in enumerate(wanted):
            result[s] = logits[row]
    return result


def fused_step_is_exact(model: Any, prompt: int = 5) -> bool:
    """Whether ``model.step`` (the backend's compiled forward pass) gives the same bits as
    :func:`forward_batch` for one sequence: a ``prompt``-token chunk, then a decode token.

    A probe, not a proof: a scheduler uses it to decide whether a sequence may move
    between the compiled step (alone) and the batched one (in company) without its
    logits changing. False when the model has no compiled step.
    """
    step = getattr(model, "step", None)
    if step is None:
        return False
    vocab = int(model.weights.token_embd.shape[0])
    ids = (np.arange(prompt, dtype=np.int64) * 7919 + 1) % vocab
    fused, batched = model.new_cache(prompt + 1), model.new_cache(prompt + 1)
    for pos, chunk in ((0, ids), (prompt, ids[-1:])):
        a = step(chunk, pos, fused, True)[0]
        b = forward_batch(model.weights, model.config, model.backend,
                          [SeqChunk(chunk, pos, batched)])[0]
        if b is None or not np.array_equal(a, b):
            return False
    return True
