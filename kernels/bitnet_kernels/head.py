"""The output head: float activations × a float16 / bfloat16 / float32 / int8 matrix.

The head (``[vocab, d_model]``, usually tied to the token embedding) is the
largest matrix a decode step reads, and it is stored in the file as F16 (or
BF16/F32). These kernels read it in that type, converting a vector at a time
in registers (``vcvtph2ps`` with F16C / AVX-512, ``fcvtl`` on Arm, integer bit
manipulation on the generic variant), so no float32 copy is ever made: a
decode step reads half the bytes of a float32 head. The ``i8`` kernel reads a
quarter: rows quantized once at load with one float32 scale per row.

C signature (``void``; integers ``int64_t``)::

    head_<elem>(const void *w, const float *wscale, const float *x, float *out,
                int64_t d, int64_t ldo, int64_t row_begin, int64_t row_end, int64_t ntok)

``out[t * ldo + r] = Σ_k w[r, k] · x[t, k]`` (times ``wscale[r]`` for ``i8``;
``wscale`` is not read otherwise) for ``row_begin <= r < row_end`` and
``t < ntok``; ``w`` is ``[rows][d]`` and ``x`` is ``[ntok][d]``, both
contiguous; ``d`` must be a multiple of the variant's float lanes.
Accumulation is float32, lane-wise partial sums with fused multiply-adds, then
a fixed tree: results agree with a float32 BLAS product within rounding.
"""

from __future__ import annotations

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
    load_vec,
    new_function,
    reduce_lanes,
    splat,
)
from bitnet_kernels.isa import Isa

__all__ = ["HEAD_ARGS", "HEAD_ELEMS", "build_head"]

HEAD_ARGS = ("w", "wscale", "x", "out", "d", "ldo", "row_begin", "row_end", "ntok")
#: Element types of the head matrix, with their size in bytes.
HEAD_ELEMS = {"f16": 2, "bf16": 2, "f32": 4, "i8": 1}
#: Rows computed together (each token's activations are loaded once per tile).
_TILE_ROWS = 4
_F16_EXP = 0x7C00 << 13


def _native_f16(isa: Isa) -> bool:
    """Whether LLVM lowers ``fpext half`` to an instruction (F16C/AVX-512, Armv8 NEON)."""
    return isa.arch == "aarch64" or (isa.arch == "x86_64" and isa.cpu.startswith("x86-64-v"))


def _f16_bits_to_f32(b: ir.IRBuilder, h: ir.Value, lanes: int) -> ir.Value:
    """float16 bits (``<lanes x i16>``) → float32, exactly, with integer operations only.

    Shift exponent and mantissa into place and rebias the exponent; infinities
    and NaNs get the float32 maximal exponent; zeros and subnormals are
    renormalised by one float subtraction (exact).
    """
    i32v, f32v = ir.VectorType(I32, lanes), ir.VectorType(F32, lanes)
    h32 = b.zext(h, i32v)
    o = b.shl(b.and_(h32, splat(i32v, 0x7FFF)), splat(i32v, 13))
    exp = b.and_(o, splat(i32v, _F16_EXP))
    o = b.add(o, splat(i32v, (127 - 15) << 23))
    o = b.select(b.icmp_unsigned("==", exp, splat(i32v, _F16_EXP)), b.add(o, splat(i32v, (128 - 16) << 23)), o)
    sub = b.fsub(b.bitcast(b.add(o, splat(i32v, 1 << 23)), f32v), b.bitcast(splat(i32v, 113 << 23), f32v))
    o = b.select(b.icmp_unsigned("==", exp, splat(i32v, 0)), b.bitcast(sub, i32v), o)
    sign = b.shl(b.and_(h32, splat(i32v, 0x8000)), splat(i32v, 16))
    return b.bitcast(b.or_(o, sign), f32v)


def _load_row(b: ir.IRBuilder, isa: Isa, elem: str, ptr: ir.Value, lanes: int) -> ir.Value:
    """``lanes`` weights at ``ptr`` (typed element pointer) as ``<lanes x float>``."""
    f32v = ir.VectorType(F32, lanes)
    if elem == "f32":
        return load_vec(b, ptr, f32v)
    if elem == "i8":
        return b.sitofp(load_vec(b, ptr, ir.VectorType(I8, lanes)), f32v)
    bits = load_vec(b, ptr, ir.VectorType(I16, lanes))
    if elem == "bf16":
        return b.bitcast(b.shl(b.zext(bits, ir.VectorType(I32, lanes)), splat(ir.VectorType(I32, lanes), 16)), f32v)
    if _native_f16(isa):
        return b.fpext(b.bitcast(bits, ir.VectorType(ir.HalfType(), lanes)), f32v)
    return _f16_bits_to_f32(b, bits, lanes)


def _elem_type(elem: str) -> ir.Type:
    return {"f32": F32, "i8": I8, "f16": I16, "bf16": I16}[elem]


def _emit_tile(
    b: ir.IRBuilder, isa: Isa, elem: str, args: dict[str, ir.Value], row0: ir.Value, rows: int,
    accs: list[ir.AllocaInstr],
) -> None:  # fmt: skip
    """Rows ``row0 .. row0 + rows - 1`` for every token."""
    lanes = isa.float_lanes
    f32v = ir.VectorType(F32, lanes)
    fmuladd = declare_intrinsic(b.module, f"llvm.fmuladd.v{lanes}f32", f32v, [f32v] * 3)
    d = args["d"]
    w = b.bitcast(args["w"], _elem_type(elem).as_pointer())
    x = b.bitcast(args["x"], F32.as_pointer())
    out = b.bitcast(args["out"], F32.as_pointer())
    wrows = [gep(b, w, b.mul(b.add(row0, const(i)), d)) for i in range(rows)]
    with for_range(b, const(0), args["ntok"], 1, "tok") as t:
        xrow = gep(b, x, b.mul(t, d))
        for acc in accs[:rows]:
            b.store(splat(f32v, 0.0), acc)
        with for_range(b, const(0), d, lanes, "k") as k:
            xv = load_vec(b, gep(b, xrow, k), f32v)
            for i in range(rows):
                wv = _load_row(b, isa, elem, gep(b, wrows[i], k), lanes)
                b.store(b.call(fmuladd, [wv, xv, b.load(accs[i])]), accs[i])
        for i in range(rows):
            row = b.add(row0, const(i)) if i else row0
            value = reduce_lanes(b, b.load(accs[i]), b.fadd)
            if elem == "i8":
                value = b.fmul(value, b.load(gep(b, b.bitcast(args["wscale"], F32.as_pointer()), row)))
            b.store(value, gep(b, out, b.add(b.mul(t, args["ldo"]), row)))


def build_head(module: ir.Module, isa: Isa, name: str, elem: str) -> ir.Function:
    """Add ``name`` (the head kernel for ``elem`` weights) to ``module``."""
    if elem not in HEAD_ELEMS:
        raise ValueError(f"unknown head element type {elem!r}; known: {sorted(HEAD_ELEMS)}")
    types = [PTR8] * 4 + [I64] * 5
    fn, b = new_function(module, name, list(zip(HEAD_ARGS, types, strict=True)))
    args = dict(zip(HEAD_ARGS, fn.args, strict=True))
    lanes = isa.float_lanes
    accs = [entry_alloca(b, ir.VectorType(F32, lanes), f"acc{i}") for i in range(_TILE_ROWS)]
    count = b.sub(args["row_end"], args["row_begin"])
    tiled_end = b.sub(args["row_end"], b.srem(count, const(_TILE_ROWS)))
    with for_range(b, args["row_begin"], tiled_end, _TILE_ROWS, "row") as row0:
        _emit_tile(b, isa, elem, args, row0, _TILE_ROWS, accs)
    with for_range(b, tiled_end, args["row_end"], 1, "rowt") as row0:
        _emit_tile(b, isa, elem, args, row0, 1, accs)
    b.ret_void()
    return fn
