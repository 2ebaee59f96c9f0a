"""The whole forward step of a BitNet model (one decode token or a prompt chunk) as one native function.

Why: a per-op step makes about ten kernel calls per layer from Python, each
handing row slices to the thread pool and waiting for them (tens of
microseconds per call, more than the arithmetic of a small model). Here every
worker thread enters ``bitnet_fused_step`` once per token and the stages meet
at native barriers (``bitnet_kernels.barrier``), as ggml's thread pool runs a
graph.

C signature (``void``)::

    bitnet_fused_step(const int64_t *ctx, int64_t thread_id, int64_t n_threads)

``ctx`` is an array of ``int64`` slots (``CTX_FIELDS``; pointers as integers,
the two float parameters as float32 bit patterns); ``ctx[layers]`` points to
``n_layers`` rows of ``LAYER_FIELDS`` slots. The dimensions are run-time
values, so one compiled module serves every model of an ISA (and is cached on
disk like the other kernels).

A step runs ``ctx[n_tok]`` tokens at positions ``pos ..`` (1 for decode, T for a
prompt chunk). Per layer, with ``|`` a barrier::

    norm+quantize the T rows of x (every thread, private copy) ; QKV rows  |
    per K/V head, token by token: RoPE of k, cache write at pos+i, RoPE of
        its query group, scores over 0..pos+i, softmax, weighted sum of V  |
    sub-norm+quantize ; wo rows, added to the residual                     |
    norm+quantize ; gate and up rows, act(gate)·up                         |
    sub-norm+quantize ; w_down rows, added to the residual                 |

then the final norm and the head rows, for the last token only
(``ctx[head_row] = T-1, ctx[n_out] = 1``) or for all of them. The projections
run the GEMV kernel below one GEMM token tile and the GEMM kernel (``isa.gemm_tile``)
from there (``ctx[gemm]``, activations padded to ``ctx[ntok_padded]`` rows),
the choice ``KernelLibrary.matmul`` makes; their int32 sums are exact and the
float epilogue is per element, so the tile never changes a value. The ternary GEMV, quantization,
RMSNorm, softmax, SiLU/ReLU², head and attention (``bitnet_kernels.attention``,
also exported here as ``bitnet_attention`` for the backend's per-op
``attention``) code are the builders of the per-op kernels, instantiated here
as internal functions, and RoPE repeats the per-op float32 expression, so
every value equals the per-op step's bit for bit. Work is split by rows
(groups of 4) and by K/V heads; each output element is computed by exactly
one thread with the same code whatever the split, so results do not depend
on the thread count.

Requirements (checked by the caller, ``FusedStepKernel.supports``): float32 K/V storage ``[capacity, n_kv_heads, head_dim]``, ``d_ff`` a multiple
of 4 and ``d_model`` a multiple of the float lanes (the head kernels step
whole vectors).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import numpy as np
from llvmlite import ir

from bitnet_kernels.attention import GroupAttention, build_attention
from bitnet_kernels.barrier import build_barrier
from bitnet_kernels.compiler import JitModule, jit_module
from bitnet_kernels.elementwise import build_rms_norm, build_softmax, emit_exp
from bitnet_kernels.gemm import GemmSpec, build_gemm
from bitnet_kernels.head import HEAD_ELEMS, build_head
from bitnet_kernels.irutil import (
    F32,
    I32,
    I64,
    PTR8,
    const,
    for_range,
    gep,
)
from bitnet_kernels.isa import Isa
from bitnet_kernels.quant import build_quantize
from bitnet_kernels.threads import get_pool, split_range

__all__ = ["ACTIVATIONS", "CTX_FIELDS", "LAYER_FIELDS", "FusedStepKernel", "build_fused_module"]

#: Slots of the step context, in order (``ctx[CTX[name]]``).
CTX_FIELDS = (
    "x", "layers", "n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff",
    "rope_dim", "neox", "act", "eps", "sqrt_hd", "pos", "cos", "sin",
    "qkv", "att", "o", "gu", "m",
    "scratch", "scratch_stride", "xq_off", "a_off", "xsum_off", "scores_off", "probs_off",
    "head_w", "head_s", "head_kind", "vocab", "logits", "out_norm", "barrier", "yield_fn",
    "n_tok", "ntok_padded", "gemm", "head_row", "n_out",
)  # fmt: skip
#: Slots of one layer's row in ``ctx[layers]``.
LAYER_FIELDS = (
    "attn_norm", "qkv_w", "qkv_s", "sub_norm", "o_w", "o_s", "ffn_norm",
    "gu_w", "gu_s", "ffn_sub_norm", "down_w", "down_s", "k", "v",
)  # fmt: skip
CTX = {name: i for i, name in enumerate(CTX_FIELDS)}
LAYER = {name: i for i, name in enumerate(LAYER_FIELDS)}
#: ``ctx[act]`` codes.
ACTIVATIONS = ("silu", "relu2")
#: ``ctx[head_kind]`` codes: the head kernels' element types, in this order.
HEAD_KIND_CODES = tuple(HEAD_ELEMS)
_STEP = "bitnet_fused_step"
_ATTENTION = "bitnet_attention"
_ROW_GROUP = 4
#: Below this many multiply-adds the attention kernel runs on the calling thread only.
_PARALLEL_MIN_MACS = 1 << 18


def _internal(fn: ir.Function) -> ir.Function:
    """A per-op kernel builder's function, private to this module. Not inlined: each stays the
    same machine code as its per-op kernel (and a profile names it)."""
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    return fn


class _Kernels:
    """The per-op builders instantiated once in the fused module."""

    def __init__(self, module: ir.Module, isa: Isa) -> None:
        rows, toks = isa.gemv_tile
        self.gemv = _internal(build_gemm(module, isa, GemmSpec("fused.gemv", rows, toks, "f32")))
        rows, toks = isa.gemm_tile
        self.gemm = _internal(build_gemm(module, isa, GemmSpec("fused.gemm", rows, toks, "f32")))
        self.quantize = _internal(build_quantize(module, isa, "fused.quantize"))
        self.rms_norm = _internal(build_rms_norm(module, isa, "fused.rms_norm"))
        self.softmax = _internal(build_softmax(module, isa, "fused.softmax"))
        self.heads = [_internal(build_head(module, isa, f"fused.head_{e}", e)) for e in HEAD_KIND_CODES]
        self.barrier = _internal(build_barrier(module, isa, "fused.barrier"))
        self.attend = _build_attention(module, isa, self.softmax)


class _Step:
    """Builder state of ``bitnet_fused_step``: context loads and the stage helpers."""

    def __init__(self, module: ir.Module, isa: Isa, k: _Kernels) -> None:
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64.as_pointer(), I64, I64]), _STEP)
        fn.attributes.add("nounwind")
        self.ctx, self.tid, self.nth = fn.args
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.k, self.isa, self.fn = k, isa, fn

    def word(self, base: ir.Value, index: int) -> ir.Value:
        return self.b.load(gep(self.b, base, index))

    def get(self, name: str) -> ir.Value:
        return self.word(self.ctx, CTX[name])

    def ptr(self, name: str, base: ir.Value | None = None) -> ir.Value:
        """A pointer slot as ``i8*`` (``base``: a layer row instead of the context)."""
        value = self.word(base, LAYER[name]) if base is not None else self.get(name)
        return self.b.inttoptr(value, PTR8)

    def f32(self, name: str) -> ir.Value:
        return self.b.bitcast(self.b.trunc(self.get(name), I32), F32)

    def span(self, units: ir.Value) -> tuple[ir.Value, ir.Value]:
        """This thread's ``[begin, end)`` of ``units`` work items (fixed, contiguous split)."""
        b = self.b
        share, extra = b.sdiv(units, self.nth), b.srem(units, self.nth)
        begin = b.add(b.mul(self.tid, share), self._min(self.tid, extra))
        more = b.zext(b.icmp_signed("<", self.tid, extra), I64)
        return begin, b.add(begin, b.add(share, more))

    def row_span(self, rows: ir.Value) -> tuple[ir.Value, ir.Value]:
        """This thread's rows of a matrix, whole groups of 4 (the packed layout's row group)."""
        begin, end = self.span(self.b.sdiv(self.b.add(rows, const(_ROW_GROUP - 1)), const(_ROW_GROUP)))
        return self.b.mul(begin, const(_ROW_GROUP)), self.b.mul(end, const(_ROW_GROUP))

    def _min(self, a: ir.Value, c: ir.Value) -> ir.Value:
        return self.b.select(self.b.icmp_signed("<", a, c), a, c)

    def private(self, off: str | None) -> ir.Value:
        """This thread's scratch area (``off``: offset slot of a part of it, in bytes)."""
        b = self.b
        base = gep(b, self.ptr("scratch"), b.mul(self.tid, self.get("scratch_stride")))
        return base if off is None else gep(b, base, self.get(off))

    def barrier(self) -> None:
        yield_ty = ir.FunctionType(I32, []).as_pointer()
        state = self.b.inttoptr(self.get("barrier"), I64.as_pointer())
        self.b.call(self.k.barrier, [state, self.nth, self.b.inttoptr(self.get("yield_fn"), yield_ty)])

    def norm_quantize(self, src: ir.Value, weight: ir.Value, d: ir.Value) -> None:
        """RMSNorm of the ``n_tok`` rows ``src [n_tok, d]`` into this thread's scratch, then their
        int8 quantization (rows ``kp`` bytes apart, as ``KernelLibrary.matmul`` lays them out)."""
        b = self.b
        xn, n = self.private(None), self.get("n_tok")
        b.call(self.k.rms_norm, [src, weight, xn, d, self.f32("eps"), const(0), n])
        kp = b.mul(b.sdiv(b.add(d, const(255)), const(256)), const(256))
        b.call(self.k.quantize, [xn, d, d, self.private("xq_off"), kp, self.private("a_off"),
                                 self.private("xsum_off"), const(0), n])  # fmt: skip

    def gemv(self, w: ir.Value, scale: ir.Value, cols: ir.Value, out: ir.Value,
             begin: ir.Value, end: ir.Value, nrows: ir.Value, ldo: ir.Value) -> None:  # fmt: skip
        """Rows ``[begin, end)`` (``< nrows``) of the ternary product with the quantized scratch,
        for the ``n_tok`` tokens (output rows ``ldo`` floats apart): the GEMV tile below a full
        GEMM token tile, the GEMM tile from there (``ctx[gemm]``), as ``KernelLibrary.matmul``
        chooses. The int32 sums are exact and the float epilogue is per element, so either
        tile gives the same values."""
        b = self.b
        nblocks = b.sdiv(b.add(cols, const(255)), const(256))
        args = [w, self.private("xq_off"), self.private("xsum_off"), scale, self.private("a_off"), out,
                nblocks, ldo, begin, end, self.get("ntok_padded"), self.get("n_tok"), nrows]  # fmt: skip
        with b.if_else(b.icmp_signed("!=", self.get("gemm"), const(0))) as (tiled, single):
            with tiled:
                b.call(self.k.gemm, args)
            with single:
                b.call(self.k.gemv, args)

    def residual(self, w: ir.Value, scale: ir.Value, cols: ir.Value) -> None:
        """``x[t, r] += (W · xq)[t, r]`` for this thread's rows of a ``[d_model, cols]`` matrix."""
        b = self.b
        d = self.get("d_model")
        begin, end = self.row_span(d)
        o, x = self.ptr("o"), self.ptr("x")
        self.gemv(w, scale, cols, o, begin, end, d, d)
        fo, fx = b.bitcast(o, F32.as_pointer()), b.bitcast(x, F32.as_pointer())
        with for_range(b, const(0), self.get("n_tok"), 1, "rtok") as t:
            row = b.mul(t, d)
            with for_range(b, b.add(row, begin), b.add(row, self._min(end, d)), 1, "res") as r:
                dst = gep(b, fx, r)
                b.store(b.fadd(b.load(dst), b.load(gep(b, fo, r))), dst)


def _emit_layer(s: _Step, row: ir.Value) -> None:
    b = s.b
    d, h, hkv, hd, dff = (s.get(n) for n in ("d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff"))
    dq = b.mul(h, hd)
    # attention
    s.norm_quantize(s.ptr("x"), s.ptr("attn_norm", row), d)
    qkv_rows = b.add(dq, b.mul(const(2), b.mul(hkv, hd)))
    begin, end = s.row_span(qkv_rows)
    s.gemv(s.ptr("qkv_w", row), s.ptr("qkv_s", row), d, s.ptr("qkv"), begin, end, qkv_rows, qkv_rows)
    s.barrier()
    heads_begin, heads_end = s.span(hkv)
    b.call(s.k.attend, [s.ctx, s.ptr("k", row), s.ptr("v", row), s.private("scores_off"),
                        s.private("probs_off"), heads_begin, heads_end])  # fmt: skip
    s.barrier()
    s.norm_quantize(s.ptr("att"), s.ptr("sub_norm", row), dq)
    s.residual(s.ptr("o_w", row), s.ptr("o_s", row), dq)
    s.barrier()
    # feed-forward
    s.norm_quantize(s.ptr("x"), s.ptr("ffn_norm", row), d)
    begin, end = s.row_span(dff)
    gu, w, scale = s.ptr("gu"), s.ptr("gu_w", row), s.ptr("gu_s", row)
    dff2 = b.mul(dff, const(2))
    s.gemv(w, scale, d, gu, begin, end, dff, dff2)
    s.gemv(w, scale, d, gu, b.add(begin, dff), b.add(end, dff), dff2, dff2)
    _emit_gated(s, gu, begin, s._min(end, dff), dff)
    s.barrier()
    s.norm_quantize(s.ptr("m"), s.ptr("ffn_sub_norm", row), dff)
    s.residual(s.ptr("down_w", row), s.ptr("down_s", row), dff)
    s.barrier()


def _emit_gated(s: _Step, gu: ir.Value, begin: ir.Value, end: ir.Value, dff: ir.Value) -> None:
    """``m[t, r] = act(gate[t, r]) · up[t, r]`` with the per-op kernels' SiLU / ReLU² expressions."""
    b = s.b
    relu2 = b.icmp_signed("==", s.get("act"), const(ACTIVATIONS.index("relu2")))
    with for_range(b, const(0), s.get("n_tok"), 1, "gtok") as t:
        g = gep(b, b.bitcast(gu, F32.as_pointer()), b.mul(t, b.mul(dff, const(2))))
        m = gep(b, b.bitcast(s.ptr("m"), F32.as_pointer()), b.mul(t, dff))
        _emit_gated_row(s, g, m, relu2, begin, end, dff)


def _emit_gated_row(s: _Step, g: ir.Value, m: ir.Value, relu2: ir.Value, begin: ir.Value, end: ir.Value,
                    dff: ir.Value) -> None:  # fmt: skip
    b = s.b
    with for_range(b, begin, end, 1, "gate") as r:
        gate, up = b.load(gep(b, g, r)), b.load(gep(b, g, b.add(r, dff)))
        silu = b.fdiv(gate, b.fadd(ir.Constant(F32, 1.0), emit_exp(b, b.fneg(gate))))
        pos = b.select(b.fcmp_ordered("<", gate, ir.Constant(F32, 0.0)), ir.Constant(F32, 0.0), gate)
        b.store(b.fmul(b.select(relu2, b.fmul(pos, pos), silu), up), gep(b, m, r))


def _emit_head(s: _Step) -> None:
    """The final norm and head rows of ``n_out`` tokens from ``head_row`` (none when 0: a piece
    of a prompt whose last token is in a later call)."""
    b = s.b
    n_out = s.get("n_out")
    with b.if_then(b.icmp_signed(">", n_out, const(0))):
        _emit_head_rows(s, n_out)


def _emit_head_rows(s: _Step, n_out: ir.Value) -> None:
    b = s.b
    d, vocab = s.get("d_model"), s.get("vocab")
    xn = s.private(None)
    x = gep(b, b.bitcast(s.ptr("x"), F32.as_pointer()), b.mul(s.get("head_row"), d))
    b.call(s.k.rms_norm, [b.bitcast(x, PTR8), s.ptr("out_norm"), xn, d, s.f32("eps"), const(0), n_out])
    begin, end = s.row_span(vocab)
    end = s._min(end, vocab)
    args = [s.ptr("head_w"), s.ptr("head_s"), xn, s.ptr("logits"), d, vocab, begin, end, n_out]
    kind = s.get("head_kind")
    done = s.fn.append_basic_block("head.done")
    switch = b.switch(kind, done)
    for code, kernel in enumerate(s.k.heads):
        block = s.fn.append_basic_block(f"head.{code}")
        switch.add_case(const(code), block)
        b.position_at_end(block)
        b.call(kernel, args)
        b.branch(done)
    b.position_at_end(done)


def build_fused_module(isa: Isa) -> ir.Module:
    """The fused step for ``isa`` with its internal kernels (signature in the module docstring)."""
    module = ir.Module(name=f"bitnet_fused_{isa.name}")
    kernels = _Kernels(module, isa)
    build_attention(module, isa, kernels.softmax, _ATTENTION)
    s = _Step(module, isa, kernels)
    layers = s.b.inttoptr(s.get("layers"), I64.as_pointer())
    with for_range(s.b, const(0), s.get("n_layers"), 1, "layer") as i:
        _emit_layer(s, gep(s.b, layers, s.b.mul(i, const(len(LAYER_FIELDS)))))
    _emit_head(s)
    s.b.ret_void()
    return module


# -- attention ---------------------------------------------------------------------------


def _build_attention(module: ir.Module, isa: Isa, softmax: ir.Function) -> ir.Function:
    """``attend(ctx, k_cache, v_cache, scores, probs, kv_begin, kv_end)``: K/V heads
    ``[kv_begin, kv_end)`` of the current position: RoPE of the new key and of the query
    group, the cache write, then ``attention.GroupAttention`` (the per-op kernel's code)."""
    args = [("ctx", I64.as_pointer()), ("kc", PTR8), ("vc", PTR8), ("scores", PTR8), ("probs", PTR8),
            ("kv_begin", I64), ("kv_end", I64)]  # fmt: skip
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [t for _, t in args]), "fused.attend")
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    for arg, (name, _) in zip(fn.args, args, strict=True):
        arg.name = name
    ctx, kc, vc, scores, probs, kv_begin, kv_end = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    a = _StepAttention(b, isa, ctx, softmax)
    fp = lambda value: b.bitcast(value, F32.as_pointer())  # noqa: E731
    with for_range(b, kv_begin, kv_end, 1, "kvh") as j:
        a.head(j, fp(kc), fp(vc), fp(scores), fp(probs))
    b.ret_void()
    return fn


class _StepAttention:
    """IR of one K/V head's part of the step (see ``_build_attention``)."""

    def __init__(self, b: ir.IRBuilder, isa: Isa, ctx: ir.Value, softmax: ir.Function) -> None:
        self.b = b
        word = lambda name: b.load(gep(b, ctx, CTX[name]))  # noqa: E731
        fp = lambda value: b.bitcast(b.inttoptr(value, PTR8), F32.as_pointer())  # noqa: E731
        self.h, self.hkv, self.hd = word("n_heads"), word("n_kv_heads"), word("head_dim")
        self.pos, self.rope_dim, self.neox = word("pos"), word("rope_dim"), word("neox")
        self.n_tok = word("n_tok")
        sqrt_hd = b.bitcast(b.trunc(word("sqrt_hd"), I32), F32)
        self.qkv, self.att = fp(word("qkv")), fp(word("att"))
        self.cos, self.sin = fp(word("cos")), fp(word("sin"))
        self.group_attention = GroupAttention(b, isa, softmax, self.hd, self.hkv, sqrt_hd)

    def head(self, j: ir.Value, kc: ir.Value, vc: ir.Value, scores: ir.Value, probs: ir.Value) -> None:
        """K/V head ``j`` for the ``n_tok`` tokens in order: token ``i`` writes its key and value
        at ``pos + i``, then its query group attends to positions ``0 .. pos + i`` (causal)."""
        b = self.b
        hd, hkv = self.hd, self.hkv
        group = b.sdiv(self.h, hkv)
        dq = b.mul(self.h, hd)
        ld_qkv = b.add(dq, b.mul(const(2), b.mul(hkv, hd)))
        half = b.sdiv(self.rope_dim, const(2))
        with for_range(b, const(0), self.n_tok, 1, "atok") as i:
            qkv, p = gep(b, self.qkv, b.mul(i, ld_qkv)), b.add(self.pos, i)
            cos, sin = gep(b, self.cos, b.mul(i, half)), gep(b, self.sin, b.mul(i, half))
            k_new = gep(b, qkv, b.add(dq, b.mul(j, hd)))
            v_new = gep(b, qkv, b.add(dq, b.mul(b.add(hkv, j), hd)))
            self.rope(k_new, cos, sin)
            self.copy(k_new, self.group_attention.cache_row(kc, p, j))
            self.copy(v_new, self.group_attention.cache_row(vc, p, j))
            first = b.mul(b.mul(j, group), hd)  # the group's first query head
            q0, out0 = gep(b, qkv, first), gep(b, self.att, b.add(b.mul(i, dq), first))
            with for_range(b, const(0), group, 1, "qrope") as g:
                self.rope(gep(b, q0, b.mul(g, hd)), cos, sin)
            t = b.add(p, const(1))
            self.group_attention.group(q0, out0, kc, vc, j, group, t, scores, probs)

    def rope(self, x: ir.Value, cos: ir.Value, sin: ir.Value) -> None:
        """Rotate the first ``rope_dim`` dims of one head in place (pairs ``2i, 2i+1``, or
        ``i, i + rope_dim/2`` for NeoX), as the per-op step does: ``a·c − b·s, a·s + b·c``."""
        b = self.b
        half = b.sdiv(self.rope_dim, const(2))
        neox = b.icmp_signed("!=", self.neox, const(0))
        with for_range(b, const(0), half, 1, "rope") as i:
            ia = b.select(neox, i, b.mul(i, const(2)))
            ib = b.select(neox, b.add(i, half), b.add(ia, const(1)))
            pa, pb = gep(b, x, ia), gep(b, x, ib)
            va, vb = b.load(pa), b.load(pb)
            c, s = b.load(gep(b, cos, i)), b.load(gep(b, sin, i))
            b.store(b.fsub(b.fmul(va, c), b.fmul(vb, s)), pa)
            b.store(b.fadd(b.fmul(va, s), b.fmul(vb, c)), pb)

    def copy(self, src: ir.Value, dst: ir.Value) -> None:
        b = self.b
        with for_range(b, const(0), self.hd, 1, "copy") as i:
            b.store(b.load(gep(b, src, i)), gep(b, dst, i))


# -- runtime -----------------------------------------------------------------------------


class FusedStepKernel:
    """The compiled fused step of one ISA: ``run(ctx_address, thread_id, n_threads)``.

    One per ISA per process (``shared``); compiling takes a few seconds once,
    then the disk cache of ``bitnet_kernels.compiler`` serves it.
    """

    _shared: dict[str, FusedStepKernel] = {}  # noqa: RUF012 - process-wide cache
    _lock = threading.Lock()

    def __init__(self, isa: Isa, *, use_cache: bool = True) -> None:
        self.isa = isa
        self._jit: JitModule = jit_module(build_fused_module(isa), isa, use_cache=use_cache)
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
        self.run: Callable[[int, int, int], None] = proto(self._jit.address(_STEP))
        _P, _I = ctypes.c_void_p, ctypes.c_int64
        attention = ctypes.CFUNCTYPE(None, *(_P,) * 6, *(_I,) * 5, ctypes.c_float, _I, _I)
        #: ``bitnet_kernels.attention``'s exported kernel (arguments: ``ATTENTION_ARGS``).
        self.attention_fn: Callable[..., None] = attention(self._jit.address(_ATTENTION))
        libc = ctypes.CDLL(None)
        #: Address of ``sched_yield``, which waiting threads call (``ctx[yield_fn]``).
        self.yield_address = ctypes.cast(libc.sched_yield, ctypes.c_void_p).value or 0

    @classmethod
    def shared(cls, isa: Isa) -> FusedStepKernel:
        with cls._lock:
            kernel = cls._shared.get(isa.name)
            if kernel is None:
                kernel = cls._shared[isa.name] = cls(isa)
            return kernel

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, positions: np.ndarray,
                  num_threads: int) -> np.ndarray:  # fmt: skip
        """Causal GQA of float32 ``q [n, h, d]`` over float32 ``k, v [t, hkv, d]`` (contiguous)
        at ``positions [n]`` (each ``< t``), K/V heads split over ``num_threads`` pool threads."""
        n, h, d = q.shape
        hkv = k.shape[1]
        q = np.ascontiguousarray(q, dtype=np.float32)
        pos = np.ascontiguousarray(positions, dtype=np.int64)
        ld = int(pos.max()) + 1
        out = np.empty_like(q)
        scratch = np.empty(2 * h * ld, dtype=np.float32)
        sqrt_hd = ctypes.c_float(float(np.float32(np.sqrt(d))))
        head = (q.ctypes.data, k.ctypes.data, v.ctypes.data, out.ctypes.data, scratch.ctypes.data,
                pos.ctypes.data, n, h, hkv, d, ld, sqrt_hd)  # fmt: skip
        fn = self.attention_fn
        parts = num_threads if n * ld * h * d >= _PARALLEL_MIN_MACS else 1
        get_pool(num_threads).run(lambda b, e: fn(*head, b, e), split_range(0, hkv, parts, 1))
        return out

    def supports(self, *, d_model: int, d_ff: int, n_heads: int, n_kv_heads: int, rope_dim: int,
                 head_dim: int) -> str | None:  # fmt: skip
        """Why a model's shapes cannot run fused (``None``: they can)."""
        if d_model % self.isa.float_lanes:
            return f"d_model {d_model} is not a multiple of {self.isa.float_lanes} float lanes"
        if d_ff % _ROW_GROUP:
            return f"d_ff {d_ff} is not a multiple of {_ROW_GROUP}"
        if n_heads % n_kv_heads:
            return f"{n_heads} query heads do not group over {n_kv_heads} K/V heads"
        if rope_dim % 2 or rope_dim > head_dim:
            return f"RoPE dims {rope_dim} do not fit head_dim {head_dim} in pairs"
        return None
