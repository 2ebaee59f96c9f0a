"""BitNet b1.58 ternary arithmetic, in plain exact numpy.

This is the reference every fast path (llvm kernels, MLX, third-party backends)
is tested against. It follows the BitNet b1.58 paper ("The Era of 1-bit LLMs",
Ma et al. 2024) and its published training code:

* weights: absmean scale ``s = mean(|W|)``, ``Q = clip(round(W / s), -1, 1)``;
  the tensor is stored as ``Q`` (int8 in {-1, 0, 1}) together with ``s``.
* activations: per-token absmax int8, ``a = 127 / max|x|``,
  ``x_q = clip(round(x * a), -128, 127)``.
* matmul: ``y = (x_q · Qᵀ) * s / a``, accumulated exactly in int32.

Rounding is numpy's round-half-to-even, as ``torch.round`` does in the
reference training code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "EPS",
    "TernaryTensor",
    "dequantize",
    "float_linear",
    "quantize_activations",
    "quantize_weights",
    "ternary_linear",
    "ternary_matmul_int",
]

#: Floor for scales, so an all-zero tensor or token quantizes to zeros, not NaN.
EPS = 1e-5


@dataclass(frozen=True)
class TernaryTensor:
    """A ternary weight matrix: ``W ≈ q * scale[:, None]``.

    ``q`` is int8 of shape ``[rows, cols]`` holding only -1, 0 and 1 (``rows`` is
    the output dimension, as in GGUF and ``torch.nn.Linear``). ``scale`` is
    float32 of shape ``[rows]``: BitNet's absmean gives one value for the whole
    tensor, repeated per row, but files written by other tools may carry a scale
    per output row, and every backend must honour it.
    """

    q: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        if self.q.ndim != 2 or self.q.dtype != np.int8:
            raise ValueError(f"q must be a 2-D int8 array, got {self.q.dtype} {self.q.shape}")
        if self.scale.shape != (self.q.shape[0],) or self.scale.dtype != np.float32:
            raise ValueError(
                f"scale must be float32 of shape ({self.q.shape[0]},), "
                f"got {self.scale.dtype} {self.scale.shape}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    @classmethod
    def from_scalar(cls, q: np.ndarray, scale: float) -> TernaryTensor:
        """Build from ``q`` and one per-tensor scale (the BitNet b1.58 case)."""
        q = np.ascontiguousarray(q, dtype=np.int8)
        return cls(q, np.full(q.shape[0], scale, dtype=np.float32))


def quantize_weights(w: np.ndarray) -> TernaryTensor:
    """Absmean ternary quantization of a ``[rows, cols]`` float matrix."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D, got shape {w.shape}")
    s = max(float(np.mean(np.abs(w), dtype=np.float64)), EPS)
    q = np.clip(np.round(w / np.float32(s)), -1, 1).astype(np.int8)
    return TernaryTensor.from_scalar(q, s)


def dequantize(t: TernaryTensor) -> np.ndarray:
    """The float32 matrix a ternary tensor stands for."""
    return t.q.astype(np.float32) * t.scale[:, None]


def quantize_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmax int8: ``x ≈ x_q / a`` with ``a`` of shape ``[n]``.

    ``x`` is ``[n, k]`` (n tokens); returns ``(x_q int8 [n, k], a float32 [n])``.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"activations must be 2-D [tokens, features], got shape {x.shape}")
    amax = np.maximum(np.max(np.abs(x), axis=1), np.float32(EPS))
    a = (np.float32(127.0) / amax).astype(np.float32)
    xq = np.clip(np.round(x * a[:, None]), -128, 127).astype(np.int8)
    return xq, a


def ternary_matmul_int(q: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Exact int32 dot products: ``acc[n, r] = sum_k xq[n, k] * q[r, k]``."""
    return xq.astype(np.int32) @ q.astype(np.int32).T


def ternary_linear(t: TernaryTensor, x: np.ndarray) -> np.ndarray:
    """BitNet linear layer: quantize ``x [n, k]`` per token, ternary matmul, rescale.

    Returns float32 ``[n, rows]``. The rescale is done in float32 in the order
    ``acc * scale / a`` so that every backend can reproduce it exactly.
    """
    xq, a = quantize_activations(x)
    acc = ternary_matmul_int(t.q, xq)
    return (acc.astype(np.float32) * t.scale[None, :]) / a[:, None]


def float_linear(t: TernaryTensor, x: np.ndarray) -> np.ndarray:
    """The unquantized-activation path that ``ternary_linear`` approximates (float64)."""
    w = t.q.astype(np.float64) * t.scale.astype(np.float64)[:, None]
    return (np.asarray(x, dtype=np.float64) @ w.T).astype(np.float32)
