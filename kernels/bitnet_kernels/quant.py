"""Per-token absmax int8 activation quantization, bit-identical to the numpy reference.

C signature (``void``; integers ``int64_t``)::

    quantize(const float *x, int64_t ldx, int64_t k, int8_t *xq, int64_t kp,
             float *a, int32_t *xsum, int64_t tok_begin, int64_t tok_end)

For each token ``t`` in ``[tok_begin, tok_end)`` (row ``t`` of ``x``, stride
``ldx`` floats): ``amax = max|x|``, ``a = 127 / max(amax, 1e-5)`` (float32
division), ``xq = clip(round_half_even(x * a), -128, 127)`` written to row
``t`` of ``xq`` (stride ``kp`` bytes; columns ``k .. kp-1`` are zeroed), and
``xsum[t] = Σ xq`` for the GEMM kernels' ``q + 1`` correction.

This is ``bitnet_sdk.ternary.quantize_activations`` operation for operation:
``x * a`` is one float32 multiply and ``|x * a| ≤ 127·(1+2⁻²³)²`` because
``|x| ≤ amax``, so adding and subtracting ``1.5·2²³`` rounds it half-to-even
exactly as ``numpy.round`` does, with no libm call and no dependence on
SSE4.1/``roundeven`` support. (NaN inputs give unspecified codes, as in numpy.)
"""

from __future__ import annotations

from llvmlite import ir

from bitnet_kernels.irutil import (
    F32,
    I8,
    I32,
    I64,
    PTR8,
    const,
    entry_alloca,
    fmax,
    for_lanes,
    for_range,
    gep,
    load_vec,
    new_function,
    reduce_lanes,
    splat,
    store_vec,
    vec,
)
from bitnet_kernels.isa import Isa

__all__ = ["QUANT_ARGS", "build_quantize"]

QUANT_ARGS = ("x", "ldx", "k", "xq", "kp", "a", "xsum", "tok_begin", "tok_end")
_ROUND_MAGIC = 12582912.0  # 1.5 * 2**23
_EPS = 1e-5  # bitnet_sdk.ternary.EPS, rounded to float32 by the constant


def build_quantize(module: ir.Module, isa: Isa, name: str) -> ir.Function:
    """Add the quantization kernel ``name`` (signature in the module docstring)."""
    types = [PTR8, I64, I64, PTR8, I64, PTR8, PTR8, I64, I64]
    fn, b = new_function(module, name, list(zip(QUANT_ARGS, types, strict=True)))
    args = dict(zip(QUANT_ARGS, fn.args, strict=True))
    lanes = isa.float_lanes
    x = b.bitcast(args["x"], F32.as_pointer())
    amax_v = entry_alloca(b, vec(F32, lanes), "amax_v")
    amax_s = entry_alloca(b, F32, "amax_s")
    sum_v = entry_alloca(b, vec(I32, lanes), "sum_v")
    sum_s = entry_alloca(b, I32, "sum_s")
    with for_range(b, args["tok_begin"], args["tok_end"], 1, "tok") as tok:
        xrow = gep(b, x, b.mul(tok, args["ldx"]))
        qrow = gep(b, args["xq"], b.mul(tok, args["kp"]))
        b.store(splat(amax_v.type.pointee, 0.0), amax_v)
        b.store(splat(F32, 0.0), amax_s)

        def absmax(width: int, j: ir.Value) -> None:
            slot = amax_v if width > 1 else amax_s
            v = _fabs(b, load_vec(b, gep(b, xrow, j), vec(F32, width)))
            b.store(fmax(b, v, b.load(slot)), slot)

        for_lanes(b, const(0), args["k"], lanes, absmax, "amax")
        amax = fmax(b, reduce_lanes(b, b.load(amax_v), lambda p, q: fmax(b, p, q)), b.load(amax_s))
        amax = fmax(b, amax, ir.Constant(F32, _EPS))
        scale = b.fdiv(ir.Constant(F32, 127.0), amax)
        b.store(scale, gep(b, b.bitcast(args["a"], F32.as_pointer()), tok))
        b.store(splat(sum_v.type.pointee, 0), sum_v)
        b.store(ir.Constant(I32, 0), sum_s)

        def quantize(width: int, j: ir.Value) -> None:
            fty, ity = vec(F32, width), vec(I32, width)
            v = b.fmul(load_vec(b, gep(b, xrow, j), fty), _splat_value(b, scale, width))
            r = b.fsub(b.fadd(v, splat(fty, _ROUND_MAGIC)), splat(fty, _ROUND_MAGIC))
            i = b.fptosi(r, ity)
            i = b.select(b.icmp_signed(">", i, splat(ity, 127)), splat(ity, 127), i)
            i = b.select(b.icmp_signed("<", i, splat(ity, -128)), splat(ity, -128), i)
            store_vec(b, b.trunc(i, vec(I8, width)), gep(b, qrow, j))
            slot = sum_v if width > 1 else sum_s
            b.store(b.add(b.load(slot), i), slot)

        for_lanes(b, const(0), args["k"], lanes, quantize, "q")
        with for_range(b, args["k"], args["kp"], 1, "pad") as j:
            b.store(ir.Constant(I8, 0), gep(b, qrow, j))
        total = b.add(reduce_lanes(b, b.load(sum_v), b.add), b.load(sum_s))
        b.store(total, gep(b, b.bitcast(args["xsum"], I32.as_pointer()), tok))
    b.ret_void()
    return fn


def _fabs(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """``|v|`` by clearing the sign bit (exact, no intrinsic needed)."""
    ity = vec(I32, v.type.count if isinstance(v.type, ir.VectorType) else 1)
    bits = b.and_(b.bitcast(v, ity), splat(ity, 0x7FFFFFFF))
    return b.bitcast(bits, v.type)


def _splat_value(b: ir.IRBuilder, scalar: ir.Value, width: int) -> ir.Value:
    """Broadcast a runtime scalar to ``width`` lanes."""
    if width == 1:
        return scalar
    ty = vec(scalar.type, width)
    one = b.insert_element(ir.Constant(ty, ir.Undefined), scalar, ir.Constant(I32, 0))
    return b.shuffle_vector(one, one, ir.Constant(vec(I32, width), [0] * width))
