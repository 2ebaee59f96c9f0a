"""Grouped-query attention over a float32 KV cache, one K/V head with its query group at a time.

One IR builder (``GroupAttention``) serves two callers, so they compute the
same values bit for bit: the compiled decode step (``bitnet_kernels.fused``)
and the exported per-op kernel below, which the llvm backend's ``attention``
runs for prompts and batched steps. A sequence's logits are therefore the
same whether its token ran in the compiled step, per op, or in a batch.

Per K/V head ``j`` and query token at position ``p`` (it sees keys ``0 .. p``)::

    scores[g, i] = (q_g · k_i) / sqrt(head_dim)     each key row read once for the group
    probs[g]     = softmax(scores[g])               the per-op softmax kernel's code
    out_g        = Σ_i probs[g, i] · v_i            positions in order, each value row read once

Dot products are lane-wise fused multiply-adds (``llvm.fma``: always fused,
so every caller rounds alike), a fixed tree over the lanes, then the scalar
tail of ``head_dim``.

C signature of the exported kernel (``void``; integers ``int64_t``)::

    attention(const float *q, const float *k, const float *v, float *out,
              float *scratch, const int64_t *positions, int64_t n, int64_t n_heads,
              int64_t n_kv_heads, int64_t head_dim, int64_t ld_scratch, float sqrt_hd,
              int64_t kv_begin, int64_t kv_end)

``q``/``out`` are ``[n, n_heads, head_dim]``, ``k``/``v`` ``[t, n_kv_heads, head_dim]``
(``t > max(positions)``), ``scratch`` holds ``2 * n_heads * ld_scratch`` floats with
``ld_scratch >= max(positions) + 1``; the kernel computes K/V heads
``[kv_begin, kv_end)`` (threads split them).
"""

from __future__ import annotations

from llvmlite import ir

from bitnet_kernels.irutil import (
    F32,
    I32,
    I64,
    PTR8,
    const,
    declare_intrinsic,
    entry_alloca,
    for_range,
    gep,
    load_vec,
    reduce_lanes,
    splat,
    store_vec,
)
from bitnet_kernels.isa import Isa

__all__ = ["ATTENTION_ARGS", "GroupAttention", "build_attention"]

ATTENTION_ARGS = ("q", "k", "v", "out", "scratch", "positions", "n", "n_heads", "n_kv_heads", "head_dim",
                  "ld_scratch", "sqrt_hd", "kv_begin", "kv_end")  # fmt: skip


class GroupAttention:
    """Emits one K/V head's attention for its query group (see the module docstring).

    ``hd``/``hkv`` are ``i64`` values, ``sqrt_hd`` a float; cache rows are
    ``[position][n_kv_heads][head_dim]`` float32.
    """

    def __init__(self, b: ir.IRBuilder, isa: Isa, softmax: ir.Function,
                 hd: ir.Value, hkv: ir.Value, sqrt_hd: ir.Value) -> None:  # fmt: skip
        self.b, self.softmax, self.hd, self.hkv, self.sqrt_hd = b, softmax, hd, hkv, sqrt_hd
        self.lanes = isa.float_lanes
        self.vty = ir.VectorType(F32, self.lanes)
        self.fma = declare_intrinsic(b.module, f"llvm.fma.v{self.lanes}f32", self.vty, [self.vty] * 3)
        self.fma_s = declare_intrinsic(b.module, "llvm.fma.f32", F32, [F32] * 3)
        self.acc = entry_alloca(b, self.vty, "acc")
        self.acc_s = entry_alloca(b, F32, "acc_s")

    def group(self, q0: ir.Value, out0: ir.Value, kc: ir.Value, vc: ir.Value, j: ir.Value, group: ir.Value,
              t: ir.Value, scores: ir.Value, probs: ir.Value) -> None:  # fmt: skip
        """Query rows ``q0 + g·hd`` → output rows ``out0 + g·hd`` for ``g < group``, over ``t`` keys
        of K/V head ``j`` (all ``float*``); ``scores``/``probs`` hold ``group · t`` floats."""
        b = self.b
        with for_range(b, const(0), t, 1, "pos") as p:
            krow = self.cache_row(kc, p, j)
            with for_range(b, const(0), group, 1, "qg") as g:
                dot = self.dot(gep(b, q0, b.mul(g, self.hd)), krow)
                b.store(b.fdiv(dot, self.sqrt_hd), gep(b, scores, b.add(b.mul(g, t), p)))
        with for_range(b, const(0), group, 1, "soft") as g:
            off = b.mul(g, t)
            b.call(self.softmax, [b.bitcast(gep(b, scores, off), PTR8), b.bitcast(gep(b, probs, off), PTR8),
                                  t, const(0), const(1)])  # fmt: skip
        self.weighted_values(out0, vc, j, group, t, probs)

    def cache_row(self, cache: ir.Value, p: ir.Value, j: ir.Value) -> ir.Value:
        b = self.b
        return gep(b, cache, b.mul(b.add(b.mul(p, self.hkv), j), self.hd))

    def _vector_end(self) -> ir.Value:
        return self.b.sub(self.hd, self.b.srem(self.hd, const(self.lanes)))

    def dot(self, x: ir.Value, y: ir.Value) -> ir.Value:
        """``Σ x·y`` over ``head_dim``: lane-wise FMAs, a fixed tree, then the scalar tail."""
        b = self.b
        b.store(splat(self.vty, 0.0), self.acc)
        b.store(ir.Constant(F32, 0.0), self.acc_s)
        vend = self._vector_end()
        with for_range(b, const(0), vend, self.lanes, "dotv") as i:
            xv, yv = load_vec(b, gep(b, x, i), self.vty), load_vec(b, gep(b, y, i), self.vty)
            b.store(b.call(self.fma, [xv, yv, b.load(self.acc)]), self.acc)
        with for_range(b, vend, self.hd, 1, "dots") as i:
            xs, ys = b.load(gep(b, x, i)), b.load(gep(b, y, i))
            b.store(b.call(self.fma_s, [xs, ys, b.load(self.acc_s)]), self.acc_s)
        return b.fadd(reduce_lanes(b, b.load(self.acc), b.fadd), b.load(self.acc_s))

    def weighted_values(self, out0: ir.Value, vc: ir.Value, j: ir.Value, group: ir.Value, t: ir.Value,
                        probs: ir.Value) -> None:  # fmt: skip
        """``out_g = Σ_p probs[g, p] · v_p``, positions in order, each V row read once per group."""
        b = self.b
        with for_range(b, const(0), group, 1, "zero") as g:
            out = gep(b, out0, b.mul(g, self.hd))
            with for_range(b, const(0), self.hd, 1, "z") as i:
                b.store(ir.Constant(F32, 0.0), gep(b, out, i))
        vend = self._vector_end()
        with for_range(b, const(0), t, 1, "vpos") as p:
            vrow = self.cache_row(vc, p, j)
            with for_range(b, const(0), group, 1, "vg") as g:
                out = gep(b, out0, b.mul(g, self.hd))
                w = b.load(gep(b, probs, b.add(b.mul(g, t), p)))
                one = b.insert_element(ir.Constant(self.vty, ir.Undefined), w, ir.Constant(I32, 0))
                wv = b.shuffle_vector(one, one, ir.Constant(ir.VectorType(I32, self.lanes), [0] * self.lanes))
                with for_range(b, const(0), vend, self.lanes, "wv") as i:
                    dst = gep(b, out, i)
                    value = b.call(self.fma, [wv, load_vec(b, gep(b, vrow, i), self.vty), load_vec(b, dst, self.vty)])
                    store_vec(b, value, dst)
                with for_range(b, vend, self.hd, 1, "ws") as i:
                    dst = gep(b, out, i)
                    b.store(b.call(self.fma_s, [w, b.load(gep(b, vrow, i)), b.load(dst)]), dst)


def build_attention(module: ir.Module, isa: Isa, softmax: ir.Function, name: str) -> ir.Function:
    """Add the exported attention kernel ``name`` (signature in the module docstring)."""
    types = [PTR8] * 5 + [I64.as_pointer()] + [I64] * 5 + [F32, I64, I64]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), types), name)
    fn.attributes.add("nounwind")
    for arg, arg_name in zip(fn.args, ATTENTION_ARGS, strict=True):
        arg.name = arg_name
    a = dict(zip(ATTENTION_ARGS, fn.args, strict=True))
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fp = lambda value: b.bitcast(value, F32.as_pointer())  # noqa: E731
    h, hd = a["n_heads"], a["head_dim"]
    att = GroupAttention(b, isa, softmax, hd, a["n_kv_heads"], a["sqrt_hd"])
    group = b.sdiv(h, a["n_kv_heads"])
    scratch = fp(a["scratch"])
    with for_range(b, a["kv_begin"], a["kv_end"], 1, "kvh") as j:
        scores = gep(b, scratch, b.mul(b.mul(j, group), b.mul(a["ld_scratch"], const(2))))
        probs = gep(b, scores, b.mul(group, a["ld_scratch"]))
        with for_range(b, const(0), a["n"], 1, "tok") as i:
            t = b.add(b.load(gep(b, a["positions"], i)), const(1))
            row = b.mul(b.add(b.mul(i, h), b.mul(j, group)), hd)
            att.group(gep(b, fp(a["q"]), row), gep(b, fp(a["out"]), row), fp(a["k"]), fp(a["v"]), j, group, t,
                      scores, probs)  # fmt: skip
    b.ret_void()
    return fn
