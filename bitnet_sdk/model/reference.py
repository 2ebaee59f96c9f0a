"""A float64 BitNet forward pass in plain numpy: the yardstick for every backend.

Written independently of ``llm.py``, ``weights.py``, ``ops.py`` and the
backends: separate (unfused) projections read by GGUF name, its own RMSNorm,
rotary embedding, causal grouped-query attention over the full sequence
(no KV cache) and its own activation quantization, all in float64. It is slow
and meant for tiny models in tests.

``activations`` selects how projection inputs are quantized, so the same
reference can stand beside each implementation it checks:

* ``"token"`` — BitNet b1.58's per-token absmax int8 (what this SDK does);
* ``"block256"`` — llama.cpp's Q8_K: one scale per 256 values, ``-127/max``
  with the signed value of largest magnitude (what llama.cpp does for TQ1_0 and
  TQ2_0 weights);
* ``"none"`` — no quantization (llama.cpp with F32 weights).

``f16_head_input`` rounds the input of the output projection to float16, as
llama.cpp does when that matrix is stored F16 (ggml converts the activations
to the weights' ``vec_dot_type``). With both knobs set, this reference
reproduces llama.cpp's CPU numerics closely (run llama.cpp with an F32 KV
cache: its default F16 cache rounds keys and values too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from gguf import MODEL_TENSOR

from bitnet_sdk.model.llm import ForwardConfig
from bitnet_sdk.model.weights import TensorSource, global_tensor_name, layer_tensor_name
from bitnet_sdk.ternary import TernaryTensor

__all__ = ["ActivationQuant", "LogitsAgreement", "compare_logits", "quantize_rows", "reference_forward"]

ActivationQuant = Literal["token", "block256", "none"]


def quantize_rows(x: np.ndarray, mode: ActivationQuant) -> np.ndarray:
    """The float64 values a projection really sees after activation quantization."""
    x = np.asarray(x, dtype=np.float64)
    if mode == "none":
        return x
    if mode == "token":
        amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-5)
        a = 127.0 / amax
        return np.clip(np.round(x * a), -128, 127) / a
    if mode == "block256":
        n, k = x.shape
        if k % 256:
            raise ValueError(f"block256 quantization needs a multiple of 256 columns, got {k}")
        blocks = x.reshape(n, k // 256, 256)
        idx = np.abs(blocks).argmax(axis=-1)[..., None]
        signed_max = np.take_along_axis(blocks, idx, axis=-1)
        safe = np.where(signed_max == 0, 1.0, signed_max)
        iscale = -127.0 / safe
        q = np.minimum(np.round(blocks * iscale), 127)  # ggml's nearest_int: half to even
        out = np.where(signed_max == 0, 0.0, q / iscale)
        return out.reshape(n, k)
    raise ValueError(f"unknown activation quantization {mode!r}")


def _w(src: TensorSource, kind: MODEL_TENSOR, layer: int) -> np.ndarray:
    """A projection as a float64 matrix ``[out, in]`` (row scales include any ``.scale``)."""
    t: TernaryTensor = src.tensor(layer_tensor_name(kind, layer))
    return t.q.astype(np.float64) * t.scale.astype(np.float64)[:, None]


def _f(src: TensorSource, name: str) -> np.ndarray:
    return np.asarray(src.tensor(name), dtype=np.float64)


def _rms(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope(x: np.ndarray, theta: float, rope_dim: int, neox: bool) -> np.ndarray:
    """``x [n, heads, head_dim]`` at positions ``0 .. n-1``, first ``rope_dim`` dims.

    NEOX pairs ``(i, i + rope_dim/2)``; otherwise ``(2i, 2i + 1)``.
    """
    n = x.shape[0]
    half = rope_dim // 2
    freqs = theta ** (-2.0 * np.arange(half) / rope_dim)
    ang = np.arange(n)[:, None, None] * freqs[None, None, :]
    ia = np.arange(half) if neox else np.arange(0, rope_dim, 2)
    ib = ia + half if neox else ia + 1
    a, b = x[..., ia], x[..., ib]
    out = x.copy()
    out[..., ia] = a * np.cos(ang) - b * np.sin(ang)
    out[..., ib] = a * np.sin(ang) + b * np.cos(ang)
    return out


def reference_forward(
    src: TensorSource,
    cfg: ForwardConfig,
    token_ids: np.ndarray,
    *,
    activations: ActivationQuant = "token",
    f16_head_input: bool = False,
) -> np.ndarray:
    """Float64 logits ``[n, vocab]`` for ``token_ids`` at positions ``0 .. n-1``."""
    ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
    n, hd, eps = ids.shape[0], cfg.head_dim, cfg.rms_eps
    group = cfg.n_heads // cfg.n_kv_heads

    def lin(w: np.ndarray, x: np.ndarray) -> np.ndarray:
        return quantize_rows(x, activations) @ w.T

    embd = _f(src, global_tensor_name(MODEL_TENSOR.TOKEN_EMBD))
    x = embd[ids]
    causal = np.tril(np.ones((n, n), dtype=bool))
    for i in range(cfg.n_layers):
        name = lambda kind, i=i: layer_tensor_name(kind, i)  # noqa: E731
        h = _rms(x, _f(src, name(MODEL_TENSOR.ATTN_NORM)), eps)
        q = lin(_w(src, MODEL_TENSOR.ATTN_Q, i), h).reshape(n, cfg.n_heads, hd)
        k = lin(_w(src, MODEL_TENSOR.ATTN_K, i), h).reshape(n, cfg.n_kv_heads, hd)
        v = lin(_w(src, MODEL_TENSOR.ATTN_V, i), h).reshape(n, cfg.n_kv_heads, hd)
        q = _rope(q, cfg.rope_theta, cfg.rope_dim, cfg.rope_neox)
        k = _rope(k, cfg.rope_theta, cfg.rope_dim, cfg.rope_neox)
        heads = []
        for j in range(cfg.n_heads):
            s = q[:, j] @ k[:, j // group].T / np.sqrt(hd)  # [n, n]
            s = np.where(causal, s, -np.inf)
            p = np.exp(s - s.max(axis=-1, keepdims=True))
            heads.append((p / p.sum(axis=-1, keepdims=True)) @ v[:, j // group])
        att = _rms(np.concatenate(heads, axis=-1), _f(src, name(MODEL_TENSOR.ATTN_SUB_NORM)), eps)
        x = x + lin(_w(src, MODEL_TENSOR.ATTN_OUT, i), att)

        m = _rms(x, _f(src, name(MODEL_TENSOR.FFN_NORM)), eps)
        gate = lin(_w(src, MODEL_TENSOR.FFN_GATE, i), m)
        up = lin(_w(src, MODEL_TENSOR.FFN_UP, i), m)
        act = np.maximum(gate, 0) ** 2 if cfg.hidden_act == "relu2" else gate / (1 + np.exp(-gate))
        y = _rms(act * up, _f(src, name(MODEL_TENSOR.FFN_SUB_NORM)), eps)
        x = x + lin(_w(src, MODEL_TENSOR.FFN_DOWN, i), y)
    output = global_tensor_name(MODEL_TENSOR.OUTPUT)
    out = _f(src, output) if output in src else embd
    h = _rms(x, _f(src, global_tensor_name(MODEL_TENSOR.OUTPUT_NORM)), eps)
    if f16_head_input:
        h = h.astype(np.float16).astype(np.float64)
    return h @ out.T


@dataclass(frozen=True)
class LogitsAgreement:
    """How closely two ``[n, vocab]`` logit matrices agree, position by position.

    Activation quantization is a step function, so two correct
    implementations whose float rounding differs by one ulp occasionally
    round one activation to the neighbouring int8 step. In a small random
    model that single flip can move a whole position's logits by a few
    percent, and the change grows through later layers. Parity is therefore
    judged by several numbers, not the worst position alone: how many
    positions agree tightly, the lowest cosine similarity and the argmax
    (greedy token) agreement.
    """

    positions: int
    max_abs: float  # worst position's max |a - b|
    median_abs: float  # median over positions of the max |a - b|
    scale: float  # max |b|, to read the above against
    tight_fraction: float  # positions with max |a - b| <= tight_rtol * scale
    min_cosine: float
    argmax_agreement: float

    def __str__(self) -> str:
        return (
            f"{self.positions} positions: max|Δ| {self.max_abs:.3g} (median {self.median_abs:.3g}, "
            f"logit scale {self.scale:.3g}), tight {self.tight_fraction:.0%}, "
            f"min cosine {self.min_cosine:.6f}, argmax agreement {self.argmax_agreement:.0%}"
        )


def compare_logits(a: np.ndarray, b: np.ndarray, *, tight_rtol: float = 1e-4) -> LogitsAgreement:
    """Agreement of ``a`` with the yardstick ``b`` (both ``[n, vocab]``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two [n, vocab] arrays of one shape, got {a.shape} and {b.shape}")
    err = np.abs(a - b).max(axis=1)
    scale = float(np.abs(b).max())
    cos = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)
    return LogitsAgreement(
        positions=a.shape[0],
        max_abs=float(err.max()),
        median_abs=float(np.median(err)),
        scale=scale,
        tight_fraction=float(np.mean(err <= tight_rtol * scale)),
        min_cosine=float(cos.min()),
        argmax_agreement=float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))),
    )
