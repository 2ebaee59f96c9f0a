"""Ternary GEMV/GEMM kernels: packed 2-bit weights × int8 activations → int32 or float32.

C signature of every kernel (``void``; all pointers 64-byte aligned buffers of
``bitnet_kernels.layout``; all integers ``int64_t``)::

    kernel(const uint8_t *w, const int8_t *x, const int32_t *xsum,
           const float *scale, const float *a, void *out,
           nblocks, ldo, row_begin, row_end, ntok_padded, ntok, nrows)

* ``w``: packed weights (``PackedTernary.data``), ``nblocks`` blocks of 256 per row;
* ``x``: activations ``[ntok_padded][nblocks * 256]``, zero padded;
* ``xsum``: ``Σ_k x[t, k]`` per token (the ``q + 1`` correction);
* ``scale``/``a``: per-row weight scale and per-token activation scale (read
  only by the ``f32`` kernels; may be NULL for ``i32``);
* ``out``: ``int32``/``float32`` ``[ntok][ldo]``; the kernel writes rows
  ``row_begin <= r < min(row_end, nrows)`` of tokens ``t < ntok``.
  ``row_begin``/``row_end`` must be multiples of 4 (the layout's row group):
  threads split the rows this way.

The float epilogue is ``(float)acc * scale[r] / a[t]`` in float32, the exact
operation order of ``bitnet_sdk.ternary.ternary_linear``, so outputs are equal
bit for bit to the reference. No fast-math flags are used anywhere.

Loop nest: row tiles (R rows) outermost, then token tiles (T tokens), then the
256-weight blocks; each block is fully unrolled over the 4 two-bit planes and
the 64 / vector_bytes chunks. A row tile's weights (R·k/4 bytes) stay in L1
while every token tile streams past them.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from bitnet_kernels.irutil import (
    F32,
    I8,
    I16,
    I32,
    I64,
    PTR8,
    const,
    declare_intrinsic,
    entry_alloca,
    for_range,
    gep,
    lane_indices,
    load_vec,
    new_function,
    splat,
)
from bitnet_kernels.isa import Isa
from bitnet_kernels.layout import BLOCK, BLOCK_BYTES, ROW_GROUP

__all__ = ["GEMM_ARGS", "GemmSpec", "build_gemm"]

#: Argument names of every GEMM kernel, in order (see the module docstring).
GEMM_ARGS = (
    "w", "x", "xsum", "scale", "a", "out",
    "nblocks", "ldo", "row_begin", "row_end", "ntok_padded", "ntok", "nrows",
)  # fmt: skip


@dataclass(frozen=True)
class GemmSpec:
    """One kernel to generate: ``rows × tokens`` register tile and output kind."""

    name: str
    rows: int
    tokens: int
    out: str  # "i32" or "f32"

    def __post_init__(self) -> None:
        if ROW_GROUP % self.rows:
            raise ValueError(f"tile rows {self.rows} must divide the row group {ROW_GROUP}")
        if self.out not in ("i32", "f32"):
            raise ValueError(f"out must be 'i32' or 'f32', got {self.out!r}")


class _Dot:
    """Emits the multiply-accumulate of one ISA on ``<VB x i8>`` operands.

    Per block and (row, token) pair: ``begin()`` gives a block-local partial,
    ``step(partial, u, x)`` adds ``u · x`` (``u`` unsigned 0..2, ``x`` signed),
    ``finish(acc, partial)`` folds it into the int32 accumulator of type
    ``acc_type``; ``reduce`` sums an accumulator's lanes.
    """

    def __init__(self, module: ir.Module, isa: Isa) -> None:
        self.m = module
        self.kind = isa.dot
        self.vb = isa.vector_bytes
        self.bytes_ty = ir.VectorType(I8, self.vb)
        if self.kind in ("vnni", "sdot"):
            self.acc_type = ir.VectorType(I32, self.vb // 4)
        else:  # maddubs and portable fold i16 pairs into i32 lanes
            self.acc_type = ir.VectorType(I32, self.vb // 2 if self.kind == "portable" else self.vb // 4)
        self.i16_ty = ir.VectorType(I16, self.vb if self.kind == "portable" else self.vb // 2)

    def begin(self, b: ir.IRBuilder, acc: ir.Value) -> ir.Value:
        if self.kind in ("vnni", "sdot"):
            return acc  # these accumulate straight into int32
        return splat(self.i16_ty, 0)

    def step(self, b: ir.IRBuilder, part: ir.Value, u: ir.Value, x: ir.Value) -> ir.Value:
        if self.kind == "vnni":
            v32 = ir.VectorType(I32, self.vb // 4)
            fn = declare_intrinsic(self.m, f"llvm.x86.avx512.vpdpbusd.{self.vb * 8}", v32, [v32] * 3)
            return b.call(fn, [part, b.bitcast(u, v32), b.bitcast(x, v32)])
        if self.kind == "sdot":
            fn = declare_intrinsic(
                self.m, "llvm.aarch64.neon.sdot.v4i32.v16i8", self.acc_type,
                [self.acc_type, self.bytes_ty, self.bytes_ty],
            )  # fmt: skip
            return b.call(fn, [part, u, x])
        if self.kind == "maddubs":
            name = "llvm.x86.avx2.pmadd.ub.sw" if self.vb == 32 else "llvm.x86.avx512.pmaddubs.w.512"
            fn = declare_intrinsic(self.m, name, self.i16_ty, [self.bytes_ty, self.bytes_ty])
            # |u·x| pair sums ≤ 512: no saturation; ≤ 8 of them per block fit in i16.
            return b.add(part, b.call(fn, [u, x]))
        prod = b.mul(b.zext(u, self.i16_ty), b.sext(x, self.i16_ty))
        return b.add(part, prod)  # ≤ 16 products of |·| ≤ 256 per lane and block

    def finish(self, b: ir.IRBuilder, acc: ir.Value, part: ir.Value) -> ir.Value:
        if self.kind in ("vnni", "sdot"):
            return part
        if self.kind == "maddubs":
            name = "llvm.x86.avx2.pmadd.wd" if self.vb == 32 else "llvm.x86.avx512.pmaddw.d.512"
            fn = declare_intrinsic(self.m, name, self.acc_type, [self.i16_ty, self.i16_ty])
            return b.add(acc, b.call(fn, [part, splat(self.i16_ty, 1)]))
        n = self.vb
        even = b.shuffle_vector(part, part, lane_indices(range(0, n, 2)))
        odd = b.shuffle_vector(part, part, lane_indices(range(1, n, 2)))
        return b.add(acc, b.add(b.sext(even, self.acc_type), b.sext(odd, self.acc_type)))

    def reduce(self, b: ir.IRBuilder, acc: ir.Value) -> ir.Value:
        n = self.acc_type.count
        fn = declare_intrinsic(self.m, f"llvm.vector.reduce.add.v{n}i32", I32, [self.acc_type])
        return b.call(fn, [acc])

    def unpack(self, b: ir.IRBuilder, packed: ir.Value, plane: int) -> ir.Value:
        """Weights of bit plane ``plane`` (0..3) as bytes 0..2: ``(packed >> 2·plane) & 3``."""
        words = ir.VectorType(I32, self.vb // 4)
        v = b.bitcast(packed, words)
        if plane:
            v = b.lshr(v, splat(words, 2 * plane))
        return b.bitcast(b.and_(v, splat(words, 0x03030303)), self.bytes_ty)


def _emit_block(
    b: ir.IRBuilder, dot: _Dot, spec: GemmSpec, wtile: ir.Value, xtile: ir.Value,
    blk: ir.Value, kp: ir.Value, accs: list[list[ir.AllocaInstr]],
) -> None:  # fmt: skip
    """One 256-weight block for every (row, token) of the tile, fully unrolled."""
    vb = dot.vb
    wblk = gep(b, wtile, b.mul(blk, const(BLOCK_BYTES * ROW_GROUP)))
    xblk = gep(b, xtile, b.mul(blk, const(BLOCK)))
    xrows = [gep(b, xblk, b.mul(kp, const(t))) if t else xblk for t in range(spec.tokens)]
    parts = [[dot.begin(b, b.load(accs[i][t])) for t in range(spec.tokens)] for i in range(spec.rows)]
    for c in range(BLOCK_BYTES // vb):
        packed = [load_vec(b, gep(b, wblk, i * BLOCK_BYTES + c * vb), dot.bytes_ty) for i in range(spec.rows)]
        for plane in range(4):
            us = [dot.unpack(b, p, plane) for p in packed]
            xs = [load_vec(b, gep(b, xr, plane * BLOCK_BYTES + c * vb), dot.bytes_ty) for xr in xrows]
            for i in range(spec.rows):
                for t in range(spec.tokens):
                    parts[i][t] = dot.step(b, parts[i][t], us[i], xs[t])
    for i in range(spec.rows):
        for t in range(spec.tokens):
            b.store(dot.finish(b, b.load(accs[i][t]), parts[i][t]), accs[i][t])


def _emit_store(
    b: ir.IRBuilder, dot: _Dot, spec: GemmSpec, args: dict[str, ir.Value],
    row0: ir.Value, tok0: ir.Value, accs: list[list[ir.AllocaInstr]],
) -> None:  # fmt: skip
    """Reduce each accumulator, subtract ``xsum``, rescale if ``f32``, store if in range."""
    xsum = b.bitcast(args["xsum"], I32.as_pointer())
    out_ty = I32 if spec.out == "i32" else F32
    out = b.bitcast(args["out"], out_ty.as_pointer())
    for t in range(spec.tokens):
        tok = b.add(tok0, const(t)) if t else tok0
        correction = b.load(gep(b, xsum, tok))
        tok_ok = b.icmp_signed("<", tok, args["ntok"])
        for i in range(spec.rows):
            row = b.add(row0, const(i)) if i else row0
            value = b.sub(dot.reduce(b, b.load(accs[i][t])), correction)
            if spec.out == "f32":
                scale = b.load(gep(b, b.bitcast(args["scale"], F32.as_pointer()), row))
                a = b.load(gep(b, b.bitcast(args["a"], F32.as_pointer()), tok))
                value = b.fdiv(b.fmul(b.sitofp(value, F32), scale), a)
            ok = b.and_(tok_ok, b.icmp_signed("<", row, args["nrows"]))
            with b.if_then(ok):
                b.store(value, gep(b, out, b.add(b.mul(tok, args["ldo"]), row)))


def build_gemm(module: ir.Module, isa: Isa, spec: GemmSpec) -> ir.Function:
    """Add kernel ``spec.name`` for ``isa`` to ``module`` (signature in the module docstring)."""
    types = [PTR8] * 6 + [I64] * 7
    fn, b = new_function(module, spec.name, list(zip(GEMM_ARGS, types, strict=True)))
    args = dict(zip(GEMM_ARGS, fn.args, strict=True))
    dot = _Dot(module, isa)
    accs = [[entry_alloca(b, dot.acc_type, f"acc{i}_{t}") for t in range(spec.tokens)] for i in range(spec.rows)]
    kp = b.mul(args["nblocks"], const(BLOCK))
    row_stride = b.mul(args["nblocks"], const(BLOCK_BYTES))  # bytes per row of a group, per block
    with for_range(b, args["row_begin"], args["row_end"], spec.rows, "row") as row0:
        group, within = b.ashr(row0, const(2)), b.and_(row0, const(ROW_GROUP - 1))
        wtile = gep(b, args["w"], b.add(
            b.mul(group, b.mul(row_stride, const(ROW_GROUP))), b.mul(within, const(BLOCK_BYTES))))
        with for_range(b, const(0), args["ntok_padded"], spec.tokens, "tok") as tok0:
            xtile = gep(b, args["x"], b.mul(tok0, kp))
            for row_accs in accs:
                for slot in row_accs:
                    b.store(splat(dot.acc_type, 0), slot)
            with for_range(b, const(0), args["nblocks"], 1, "blk") as blk:
                _emit_block(b, dot, spec, wtile, xtile, blk, kp, accs)
            _emit_store(b, dot, spec, args, row0, tok0, accs)
    b.ret_void()
    return fn
