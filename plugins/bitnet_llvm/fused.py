"""The llvm backend's compiled forward step: one native call per step, all threads inside it.

``CompiledForwardStep`` binds a loaded model to ``bitnet_kernels.fused``'s
step function: the weights' addresses and dimensions go into a context array
once at load; per step (one decode token or a prompt chunk of T tokens)
Python only copies the embedding rows, writes the position, token count, GEMM
tile, RoPE rows and output address into the context, and lets every thread of
the pool call the step once (``ThreadPool.run_gang``). The stages
meet at native barriers.

What runs where:

* any number of tokens with a float32 KV cache: the compiled step (prompt
  chunks over the GEMV/GEMM token tiles ``KernelLibrary.matmul`` would pick);
* an F16 KV cache, and shapes the module does not handle: the per-op step
  (``forward.LlvmForwardStep``), the readable reference. ``native_steps``
  counts the compiled calls.

Exactness: every stage is the per-op kernels' code (attention included: the
backend's per-op ``attention`` runs the same native kernel for float32
caches), so logits and the KV cache are bit for bit the per-op step's, and
the batching scheduler's probe finds it equal to a batched step
(``tests/plugins/test_llvm_compiled_step.py``).

Thread safety: each calling Python thread gets its own buffers and context,
so several generations may step the same model at once; when the pool is busy
with another caller the step runs on the calling thread alone (the same
values: the work split never changes a result).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
from bitnet_kernels import HeadMatrix, KernelLibrary, PackedTernary
from bitnet_kernels.fused import (
    ACTIVATIONS,
    CTX,
    CTX_FIELDS,
    HEAD_KIND_CODES,
    LAYER,
    LAYER_FIELDS,
    FusedStepKernel,
)
from bitnet_kernels.layout import BLOCK, aligned_zeros, padded
from bitnet_kernels.threads import get_pool

from bitnet_llvm.forward import LlvmForwardStep

__all__ = ["CompiledForwardStep", "unsupported_reason"]

_ALIGN = 64


def _addr(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def _f32_bits(value: float) -> int:
    return int(np.array([value], dtype=np.float32).view(np.int32)[0])


def unsupported_reason(kernel: FusedStepKernel, cfg: Any, weights: Any) -> str | None:
    """Why this model cannot take the compiled step (``None``: it can)."""
    if not isinstance(weights.output, HeadMatrix) or weights.output.kind not in HEAD_KIND_CODES:
        return "the output head was not prepared by this backend"
    if cfg.hidden_act not in ACTIVATIONS:
        return f"activation {cfg.hidden_act!r}"
    if not all(isinstance(m, PackedTernary) for layer in weights.layers
               for m in (layer.wqkv, layer.wo, layer.w_gate_up, layer.w_down)):  # fmt: skip
        return "weights not in the packed ternary layout"
    return kernel.supports(d_model=cfg.d_model, d_ff=cfg.d_ff, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
                           rope_dim=cfg.rope_dim, head_dim=cfg.head_dim)  # fmt: skip


class _State:
    """One calling thread's buffers, context and barrier."""

    def __init__(self, step: CompiledForwardStep) -> None:
        self.barrier = aligned_zeros(16, np.int64)
        self.layers = step.layer_table.copy()
        self.ctx = step.ctx_template.copy()
        self.ctx[CTX["barrier"]], self.ctx[CTX["layers"]] = _addr(self.barrier), _addr(self.layers)
        self.ctx_addr = _addr(self.ctx)
        #: The cache's layer-0 key array the table points into (weak: a finished cache is freed).
        self.keys: weakref.ref[np.ndarray] | None = None
        self.scratch: np.ndarray | None = None
        self.capacity = self.tokens = self.tokens_padded = 0
        self.x = np.empty(0, np.float32)

    def reserve(self, step: CompiledForwardStep, tokens: int, tokens_padded: int) -> None:
        """Activation buffers for ``tokens`` rows (the scratch for ``tokens_padded`` quantized rows)."""
        if tokens > self.tokens:
            cfg, f32 = step.cfg, np.float32
            self.x = aligned_zeros(tokens * cfg.d_model, f32)
            buffers = {"x": self.x, "qkv": aligned_zeros(tokens * (cfg.q_dim + 2 * cfg.kv_dim), f32),
                       "att": aligned_zeros(tokens * cfg.q_dim, f32), "o": aligned_zeros(tokens * cfg.d_model, f32),
                       "gu": aligned_zeros(tokens * 2 * cfg.d_ff, f32), "m": aligned_zeros(tokens * cfg.d_ff, f32)}  # fmt: skip
            for name, buf in buffers.items():
                self.ctx[CTX[name]] = _addr(buf)
            self._buffers, self.tokens = buffers, tokens
        if tokens_padded > self.tokens_padded:
            self.tokens_padded = tokens_padded
            if self.capacity:
                self._scratch(step, self.capacity)

    def bind_cache(self, step: CompiledForwardStep, ks: list[np.ndarray], vs: list[np.ndarray]) -> None:
        """Point the layer table at the cache's arrays; grow the attention scratch with them."""
        if self.keys is not None and self.keys() is ks[0]:
            return
        for i, (k, v) in enumerate(zip(ks, vs, strict=True)):
            self.layers[i, LAYER["k"]], self.layers[i, LAYER["v"]] = _addr(k), _addr(v)
        capacity = int(ks[0].shape[0])
        if capacity > self.capacity:
            self._scratch(step, capacity)
        self.keys = weakref.ref(ks[0])

    def _scratch(self, step: CompiledForwardStep, capacity: int) -> None:
        """Per worker thread: normed activations, their int8 codes, scales and sums (one row per
        token, padded to the GEMM token tile), scores, probabilities."""
        cfg, n = step.cfg, self.tokens_padded
        widest = max(cfg.d_model, cfg.q_dim, cfg.d_ff)
        offsets, at = {}, padded(n * widest * 4, _ALIGN)  # the normed activations come first
        sizes = {"xq_off": n * padded(widest, BLOCK), "a_off": 4 * n, "xsum_off": 4 * n,
                 "scores_off": 4 * step.group * capacity, "probs_off": 4 * step.group * capacity}  # fmt: skip
        for name, size in sizes.items():
            offsets[name] = at
            at += padded(size, _ALIGN)
        stride = at + _ALIGN  # a cache line between threads
        self.scratch = aligned_zeros(stride * step.lib.num_threads, np.uint8)
        self.ctx[CTX["scratch"]], self.ctx[CTX["scratch_stride"]] = _addr(self.scratch), stride
        for name, off in offsets.items():
            self.ctx[CTX[name]] = off
        self.capacity = capacity


class CompiledForwardStep:
    """``step(token_ids, start_pos, cache, last_only) -> logits``: compiled for a float32
    cache, per op (``LlvmForwardStep``) otherwise."""

    def __init__(self, lib: KernelLibrary, kernel: FusedStepKernel, per_op: LlvmForwardStep) -> None:
        self.lib, self.kernel, self.per_op = lib, kernel, per_op
        self.cfg, self.weights = cfg, w = per_op.cfg, per_op.weights
        self.group = cfg.n_heads // cfg.n_kv_heads
        #: Calls that ran the compiled step (the others went per op).
        self.native_steps = 0
        #: Tokens per native call: longer chunks run in pieces of this many, token by token the
        #: same values, so the buffers a calling thread keeps stay small (``_State.reserve``).
        self.max_chunk = 64
        self._keep: list[np.ndarray] = []  # float32 copies of norms the context points to
        self.layer_table = np.zeros((len(w.layers), len(LAYER_FIELDS)), dtype=np.int64)
        for i, layer in enumerate(w.layers):
            row = self.layer_table[i]
            for name, norm in (("attn_norm", layer.attn_norm), ("sub_norm", layer.attn_sub_norm),
                               ("ffn_norm", layer.ffn_norm), ("ffn_sub_norm", layer.ffn_sub_norm)):  # fmt: skip
                row[LAYER[name]] = self._float32(norm)
            for prefix, m in (("qkv", layer.wqkv), ("o", layer.wo), ("gu", layer.w_gate_up), ("down", layer.w_down)):
                row[LAYER[f"{prefix}_w"]], row[LAYER[f"{prefix}_s"]] = m.pointers
        self.ctx_template = self._context()
        self._local = threading.local()

    def _float32(self, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a, dtype=np.float32)
        self._keep.append(a)
        return _addr(a)

    def _context(self) -> np.ndarray:
        cfg, head = self.cfg, self.weights.output
        ctx = np.zeros(len(CTX_FIELDS), dtype=np.int64)
        values = {
            "n_layers": len(self.weights.layers), "d_model": cfg.d_model, "n_heads": cfg.n_heads,
            "n_kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "d_ff": cfg.d_ff, "rope_dim": cfg.rope_dim,
            "neox": int(bool(cfg.rope_neox)), "act": ACTIVATIONS.index(cfg.hidden_act),
            "eps": _f32_bits(cfg.rms_eps), "sqrt_hd": _f32_bits(float(np.float32(np.sqrt(cfg.head_dim)))),
            "head_w": head.pointers[0], "head_s": head.pointers[1] or 0,
            "head_kind": HEAD_KIND_CODES.index(head.kind), "vocab": head.shape[0],
            "out_norm": self._float32(self.weights.output_norm), "yield_fn": self.kernel.yield_address,
        }  # fmt: skip
        for name, value in values.items():
            ctx[CTX[name]] = value
        return ctx

    def _state(self) -> _State:
        state: _State | None = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _State(self)
        return state

    def __call__(self, token_ids: np.ndarray, start_pos: int, cache: Any, last_only: bool) -> np.ndarray:
        n = int(token_ids.shape[0])
        if n == 0 or cache.dtype != np.float32:
            return self.per_op(token_ids, start_pos, cache, last_only)
        state = self._state()
        ks, vs = cache.storage(start_pos, n)  # checks the whole chunk before anything is written
        state.bind_cache(self, ks, vs)
        self.per_op.rope.rows(np.array([start_pos + n - 1]))  # grows the shared table when needed
        logits = np.empty((1 if last_only else n, self.weights.output.shape[0]), dtype=np.float32)
        for at in range(0, n, self.max_chunk):
            m = min(self.max_chunk, n - at)
            out = logits[-1:] if last_only else logits[at : at + m]
            self._run(state, token_ids[at : at + m], start_pos + at, out if not last_only or at + m == n else None)
            cache.commit(start_pos + at + m)
        self.native_steps += 1
        return logits

    def _run(self, state: _State, token_ids: np.ndarray, start_pos: int, logits: np.ndarray | None) -> None:
        """One native call for ``token_ids`` at ``start_pos ..``: the head rows into ``logits``
        (the last token's when it has one row; none when ``None``)."""
        n = int(token_ids.shape[0])
        family, tile = self.lib.token_tile(n)  # the tile KernelLibrary.matmul would run
        state.reserve(self, n, padded(n, tile))
        cos, sin = self.per_op.rope.table
        n_out = 0 if logits is None else logits.shape[0]
        np.copyto(state.x[: n * self.cfg.d_model].reshape(n, -1), self.weights.token_embd[token_ids])
        for name, value in (("pos", start_pos), ("n_tok", n), ("ntok_padded", padded(n, tile)),
                            ("gemm", int(family == "gemm")), ("head_row", n - n_out), ("n_out", n_out),
                            ("cos", _addr(cos[start_pos])), ("sin", _addr(sin[start_pos])),
                            ("logits", 0 if logits is None else _addr(logits))):  # fmt: skip
            state.ctx[CTX[name]] = value
        run, addr = self.kernel.run, state.ctx_addr
        get_pool(self.lib.num_threads).run_gang(lambda tid, nth: run(addr, tid, nth))
