"""The llvm backend's per-op forward step: the readable reference of the compiled step.

What it is: the whole forward pass for one model's shapes, bound once
at load (weights, kernel entry points, per-layer tensors and RoPE tables), so
a step makes only the native kernel calls plus a few numpy ones per layer:
RMSNorm, the fused QKV matmul, RoPE of queries and keys together from cached
cos/sin tables (no trigonometry per token), the KV cache write, attention,
the sub-norm and output matmul, then the FFN with one fused gate/up matmul.
It computes exactly what ``bitnet_sdk.model.llm.forward`` computes on this
backend (tests compare them on every model variant they build).

Where it runs: F16 KV caches, shapes the compiled step does not take, and
every step with ``BITNET_LLVM_COMPILED_STEP=off``. Decode tokens and prompt
chunks otherwise run ``fused.CompiledForwardStep``: one native call per step
with all threads inside it, meeting at native barriers; it is checked against
this class on every model variant the tests build.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from bitnet_kernels import KernelLibrary

__all__ = ["LlvmForwardStep"]


class StepBackend(Protocol):
    """What the step needs of its backend (``LlvmBackend`` is one); a protocol, not an
    import, so the backend module can build steps without an import circle."""

    kernels: KernelLibrary

    def attention(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, q_positions: np.ndarray
    ) -> np.ndarray: ...

    def head(self, w: Any, x: np.ndarray) -> np.ndarray: ...

#: RoPE table growth, in positions (doubles beyond).
_ROPE_CHUNK = 256


class _RopeTable:
    """cos/sin of ``position * theta^(-2i/d)`` per position, computed as ``ops.rope`` does
    (float64 angles, rounded to float32 once), grown on demand.

    Several generations may share one model: the pair is replaced as one tuple, so a
    reader never sees a new ``cos`` with an old ``sin``.
    """

    def __init__(self, theta: float, dim: int) -> None:
        self.inv_freq = theta ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
        self.table = (np.empty((0, dim // 2), np.float32), np.empty((0, dim // 2), np.float32))

    def rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cos, sin = self.table
        need = int(positions.max()) + 1
        if need > cos.shape[0]:
            size = max(_ROPE_CHUNK, cos.shape[0] * 2, need)
            ang = np.arange(size, dtype=np.float64)[:, None] * self.inv_freq[None, :]
            cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
            self.table = (cos, sin)
        return cos[positions][:, None, :], sin[positions][:, None, :]


class LlvmForwardStep:
    """``step(token_ids, start_pos, cache, last_only) -> logits`` for one loaded model."""

    def __init__(self, backend: StepBackend, cfg: Any, weights: Any) -> None:
        self.backend, self.cfg, self.weights = backend, cfg, weights
        self.lib = backend.kernels
        self.rope = _RopeTable(cfg.rope_theta, cfg.rope_dim)
        self.neox = bool(cfg.rope_neox)
        self.act = self.lib.relu2 if cfg.hidden_act == "relu2" else self.lib.silu

    def _rotate(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The reference RoPE (``Backend.rope``) over the first ``rope_dim`` dims of every head (same float32 ops)."""
        d = self.cfg.rope_dim
        cos, sin = self.rope.rows(positions)
        part = x[..., :d]
        a, b = (part[..., : d // 2], part[..., d // 2 :]) if self.neox else (part[..., 0::2], part[..., 1::2])
        out = x.copy()
        if self.neox:
            out[..., : d // 2], out[..., d // 2 : d] = a * cos - b * sin, a * sin + b * cos
        else:
            out[..., 0:d:2], out[..., 1:d:2] = a * cos - b * sin, a * sin + b * cos
        return out

    def __call__(self, token_ids: np.ndarray, start_pos: int, cache: Any, last_only: bool) -> np.ndarray:
        cfg, w, lib = self.cfg, self.weights, self.lib
        n = token_ids.shape[0]
        h, hkv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        d_q = h * hd
        eps = cfg.rms_eps
        positions = np.arange(start_pos, start_pos + n, dtype=np.int64)
        x = np.ascontiguousarray(w.token_embd[token_ids], dtype=np.float32)
        for i, layer in enumerate(w.layers):
            qkv = lib.matmul(layer.wqkv, lib.rms_norm(x, layer.attn_norm, eps))
            qk = self._rotate(qkv[:, : d_q + hkv * hd].reshape(n, h + hkv, hd), positions)
            v = qkv[:, d_q + hkv * hd :].reshape(n, hkv, hd)
            k_all, v_all = cache.update(i, start_pos, qk[:, h:], v)
            att = self.backend.attention(qk[:, :h], k_all, v_all, positions).reshape(n, d_q)
            x = x + lib.matmul(layer.wo, lib.rms_norm(att, layer.attn_sub_norm, eps))
            gate_up = lib.matmul(layer.w_gate_up, lib.rms_norm(x, layer.ffn_norm, eps))
            m = self.act(gate_up[:, : cfg.d_ff]) * gate_up[:, cfg.d_ff :]
            x = x + lib.matmul(layer.w_down, lib.rms_norm(m, layer.ffn_sub_norm, eps))
        if last_only:
            x = x[-1:]
        return self.backend.head(w.output, lib.rms_norm(x, w.output_norm, eps))
