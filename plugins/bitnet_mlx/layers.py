"""Float layer ops of a BitNet block on MLX, matching ``bitnet_sdk.backends.ops``.

Fused MLX kernels where MLX has them (``mx.fast.rms_norm``, ``mx.fast.rope``,
``mx.fast.scaled_dot_product_attention``), plain MLX element-wise ops
elsewhere. Shapes and semantics are those of the numpy reference; results
agree within float32 rounding (rope: within the float32 angle error, since
MLX computes ``position * inv_freq`` in float32 where the reference uses
float64; see ``docs/mlx.md`` for the tolerances the tests hold them to).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

__all__ = ["attention", "attention_mask", "relu2", "rms_norm", "rope", "silu", "softmax"]


def rms_norm(x: mx.array, weight: mx.array, eps: float) -> mx.array:
    """RMSNorm over the last axis: ``x / sqrt(mean(x²) + eps) * weight`` (fused)."""
    return mx.fast.rms_norm(x, weight, eps)


def rope(x: mx.array, positions: np.ndarray, theta: float, neox: bool) -> mx.array:
    """Rotary embedding of ``x [n, h, d]`` at ``positions [n]`` (any positions, fused).

    ``mx.fast.rope`` rotates the second-to-last axis of ``[B, ..., T, D]`` from a
    per-batch offset, so each token is a batch of one position: ``x`` is viewed as
    ``[n, h, 1, d]`` with offsets ``positions``. ``neox=False`` (consecutive
    pairs, llama.cpp's NORM style) is MLX's ``traditional=True``.
    """
    n, h, d = x.shape
    offsets = mx.array(np.asarray(positions, dtype=np.int32).reshape(n))
    out = mx.fast.rope(
        x.reshape(n, h, 1, d), d, traditional=not neox, base=float(theta), scale=1.0,
        offset=offsets,
    )
    return out.reshape(n, h, d)


def attention_mask(q_positions: np.ndarray, t: int) -> str | mx.array | None:
    """The SDPA mask for queries at ``q_positions`` over keys ``0 .. t-1``.

    A query at position ``p`` sees keys ``0 .. p``. When the queries are the
    last ``n`` positions (prompt or generation step with a KV cache) this is
    MLX's lower-right-aligned ``"causal"`` mask, or no mask at all for one
    query at ``t - 1``; otherwise an explicit boolean mask (``True`` = keep).
    """
    pos = np.asarray(q_positions, dtype=np.int64).reshape(-1)
    n = pos.shape[0]
    if np.array_equal(pos, np.arange(t - n, t)):
        return None if n == 1 else "causal"
    keep = np.arange(t)[None, :] <= pos[:, None]  # [n, t]
    return mx.array(keep)


def attention(
    q: mx.array, k: mx.array, v: mx.array, q_positions: np.ndarray
) -> mx.array:
    """Causal grouped-query attention: ``q [n, h, d]``, ``k, v [t, hkv, d]`` → ``[n, h, d]``.

    Uses the fused SDPA with native GQA (query head ``j`` reads KV head
    ``j // (h // hkv)``, no tiling of ``k``/``v``) and scale ``1/sqrt(d)``.
    """
    d = q.shape[-1]
    mask = attention_mask(q_positions, k.shape[0])
    out = mx.fast.scaled_dot_product_attention(
        q.transpose(1, 0, 2)[None],  # [1, h, n, d]
        k.transpose(1, 0, 2)[None],  # [1, hkv, t, d]
        v.transpose(1, 0, 2)[None],
        scale=float(1.0 / np.sqrt(d)),
        mask=mask,
    )
    return out[0].transpose(1, 0, 2)  # [n, h, d]


def softmax(x: mx.array, axis: int = -1) -> mx.array:
    """Softmax in float32 (MLX subtracts the max, as the reference does)."""
    return mx.softmax(x, axis=axis, precise=True)


def silu(x: mx.array) -> mx.array:
    """SiLU written as the reference writes it: ``x / (1 + exp(-x))``."""
    return x / (1.0 + mx.exp(-x))


def relu2(x: mx.array) -> mx.array:
    """Squared ReLU (exact: one max and one product per element)."""
    r = mx.maximum(x, 0.0)
    return r * r
