"""Element-wise float32 kernels of a BitNet block: RMSNorm, softmax, SiLU, squared ReLU.

Why JIT these at all: numpy makes one pass over memory per operator (RMSNorm
is square, mean, add, sqrt, divide, multiply); these kernels fuse each op
into one or two passes. They agree with ``bitnet_sdk.backends.ops`` within
float32 rounding: sums are taken in a different order (lane-wise partial sums,
then a fixed tree), and ``exp`` is a Cephes-style polynomial (≤ 2 ulp on the
normal range — measured < 1 ulp — with gradual underflow and overflow to ``inf``), so that the
objects need no libm and vectorise on every target.

C signatures (``void``; integers ``int64_t``; ``[begin, end)`` selects rows
for the row-wise ops and elements for the flat ones, for thread slicing)::

    rms_norm(const float *x, const float *w, float *out, int64_t d, float eps, int64_t begin, int64_t end)
    softmax(const float *x, float *out, int64_t d, int64_t begin, int64_t end)
    silu(const float *x, float *out, int64_t begin, int64_t end)
    relu2(const float *x, float *out, int64_t begin, int64_t end)
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

from bitnet_kernels.irutil import (
    F32,
    I32,
    I64,
    PTR8,
    declare_intrinsic,
    entry_alloca,
    fmax,
    fmin,
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

__all__ = ["build_relu2", "build_rms_norm", "build_silu", "build_softmax", "emit_exp"]

_MAGIC = 12582912.0  # 1.5 * 2**23: x + M - M rounds to an integer, half to even
_LOG2E = 1.44269504088896341
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4  # Cody–Waite split of ln 2
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
             4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)  # fmt: skip
_EXP_HI = 88.72283935546875  # above: inf
_EXP_LO = -103.97208404541016  # below: 0 (under half the smallest subnormal)


def _lanes_of(ty: ir.Type) -> int:
    return ty.count if isinstance(ty, ir.VectorType) else 1


def _pow2(b: ir.IRBuilder, n: ir.Value, fty: ir.Type) -> ir.Value:
    """``2**n`` for integer ``n`` in the normal exponent range, by building the bits."""
    ity = n.type
    return b.bitcast(b.shl(b.add(n, splat(ity, 127)), splat(ity, 23)), fty)


def emit_exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """``exp(x)`` lane-wise for a float32 scalar or vector value."""
    fty = x.type
    ity = vec(I32, _lanes_of(fty))
    xc = fmin(b, fmax(b, x, splat(fty, _EXP_LO)), splat(fty, _EXP_HI))
    fx = b.fsub(b.fadd(b.fmul(xc, splat(fty, _LOG2E)), splat(fty, _MAGIC)), splat(fty, _MAGIC))
    r = b.fsub(b.fsub(xc, b.fmul(fx, splat(fty, _LN2_HI))), b.fmul(fx, splat(fty, _LN2_LO)))
    p = splat(fty, _EXP_POLY[0])
    for coeff in _EXP_POLY[1:]:
        p = b.fadd(b.fmul(p, r), splat(fty, coeff))
    y = b.fadd(b.fadd(b.fmul(p, b.fmul(r, r)), r), splat(fty, 1.0))
    n = b.fptosi(fx, ity)  # in [-150, 128]: scale in two exact steps
    n1 = b.ashr(n, splat(ity, 1))
    y = b.fmul(b.fmul(y, _pow2(b, n1, fty)), _pow2(b, b.sub(n, n1), fty))
    y = b.select(b.fcmp_ordered(">", x, splat(fty, _EXP_HI)), splat(fty, float("inf")), y)
    y = b.select(b.fcmp_ordered("<", x, splat(fty, _EXP_LO)), splat(fty, 0.0), y)
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


def _f32(b: ir.IRBuilder, ptr: ir.Value) -> ir.Value:
    return b.bitcast(ptr, F32.as_pointer())


def _broadcast(b: ir.IRBuilder, scalar: ir.Value, width: int) -> ir.Value:
    if width == 1:
        return scalar
    ty = vec(scalar.type, width)
    one = b.insert_element(ir.Constant(ty, ir.Undefined), scalar, ir.Constant(I32, 0))
    return b.shuffle_vector(one, one, ir.Constant(vec(I32, width), [0] * width))


def _row_reduce(
    b: ir.IRBuilder, row: ir.Value, d: ir.Value, lanes: int, init: float, name: str,
    term: Callable[[ir.Value], ir.Value], combine: Callable[[ir.Value, ir.Value], ir.Value],
) -> ir.Value:  # fmt: skip
    """``combine``-fold of ``term(x_j)`` over a row: lane partials, tree, then the scalar tail."""
    acc_v = entry_alloca(b, vec(F32, lanes), f"{name}_v")
    acc_s = entry_alloca(b, F32, f"{name}_s")
    b.store(splat(acc_v.type.pointee, init), acc_v)
    b.store(ir.Constant(F32, init), acc_s)

    def body(width: int, j: ir.Value) -> None:
        slot = acc_v if width > 1 else acc_s
        b.store(combine(b.load(slot), term(load_vec(b, gep(b, row, j), vec(F32, width)))), slot)

    for_lanes(b, ir.Constant(I64, 0), d, lanes, body, name)
    return combine(reduce_lanes(b, b.load(acc_v), combine), b.load(acc_s))


def build_rms_norm(module: ir.Module, isa: Isa, name: str) -> ir.Function:
    """``out = x / sqrt(mean(x²) + eps) * w`` per row of length ``d``."""
    fn, b = new_function(module, name, [("x", PTR8), ("w", PTR8), ("out", PTR8), ("d", I64),
                                        ("eps", F32), ("begin", I64), ("end", I64)])  # fmt: skip
    x, w, out, d, eps, begin, end = fn.args
    lanes = isa.float_lanes
    sqrt = declare_intrinsic(module, "llvm.sqrt.f32", F32, [F32])
    with for_range(b, begin, end, 1, "row") as r:
        row = gep(b, _f32(b, x), b.mul(r, d))
        orow = gep(b, _f32(b, out), b.mul(r, d))
        ss = _row_reduce(b, row, d, lanes, 0.0, "ss", lambda v: b.fmul(v, v), b.fadd)
        denom = b.call(sqrt, [b.fadd(b.fdiv(ss, b.sitofp(d, F32)), eps)])

        def body(width: int, j: ir.Value) -> None:
            ty = vec(F32, width)
            v = b.fdiv(load_vec(b, gep(b, row, j), ty), _broadcast(b, denom, width))
            store_vec(b, b.fmul(v, load_vec(b, gep(b, _f32(b, w), j), ty)), gep(b, orow, j))

        for_lanes(b, ir.Constant(I64, 0), d, lanes, body, "norm")
    b.ret_void()
    return fn


def build_softmax(module: ir.Module, isa: Isa, name: str) -> ir.Function:
    """``out = exp(x - max x) / Σ exp(x - max x)`` per row of length ``d``."""
    fn, b = new_function(module, name, [("x", PTR8), ("out", PTR8), ("d", I64),
                                        ("begin", I64), ("end", I64)])  # fmt: skip
    x, out, d, begin, end = fn.args
    lanes = isa.float_lanes
    with for_range(b, begin, end, 1, "row") as r:
        row = gep(b, _f32(b, x), b.mul(r, d))
        orow = gep(b, _f32(b, out), b.mul(r, d))
        peak = _row_reduce(b, row, d, lanes, float("-inf"), "max", lambda v: v,
                           lambda p, q: fmax(b, p, q))  # fmt: skip

        def exp_term(v: ir.Value) -> ir.Value:
            return emit_exp(b, b.fsub(v, _broadcast(b, peak, _lanes_of(v.type))))

        def exp_store(width: int, j: ir.Value) -> None:
            e = exp_term(load_vec(b, gep(b, row, j), vec(F32, width)))
            store_vec(b, e, gep(b, orow, j))

        for_lanes(b, ir.Constant(I64, 0), d, lanes, exp_store, "exp")
        total = _row_reduce(b, orow, d, lanes, 0.0, "sum", lambda v: v, b.fadd)

        def divide(width: int, j: ir.Value) -> None:
            ptr = gep(b, orow, j)
            store_vec(b, b.fdiv(load_vec(b, ptr, vec(F32, width)), _broadcast(b, total, width)), ptr)

        for_lanes(b, ir.Constant(I64, 0), d, lanes, divide, "div")
    b.ret_void()
    return fn


def _build_map(
    module: ir.Module, isa: Isa, name: str, op: Callable[[ir.IRBuilder, ir.Value], ir.Value]
) -> ir.Function:
    """``out[j] = op(x[j])`` over ``[begin, end)``, vectorised with a scalar tail."""
    fn, b = new_function(module, name, [("x", PTR8), ("out", PTR8), ("begin", I64), ("end", I64)])
    x, out, begin, end = fn.args

    def body(width: int, j: ir.Value) -> None:
        v = load_vec(b, gep(b, _f32(b, x), j), vec(F32, width))
        store_vec(b, op(b, v), gep(b, _f32(b, out), j))

    for_lanes(b, begin, end, isa.float_lanes, body, "e")
    b.ret_void()
    return fn


def _silu(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    one = splat(v.type, 1.0)
    return b.fdiv(v, b.fadd(one, emit_exp(b, b.fneg(v))))


def _relu2(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    zero = splat(v.type, 0.0)
    r = b.select(b.fcmp_ordered("<", v, zero), zero, v)  # NaN stays NaN, like numpy.maximum
    return b.fmul(r, r)


def build_silu(module: ir.Module, isa: Isa, name: str) -> ir.Function:
    """``out = x / (1 + exp(-x))`` over elements ``[begin, end)``."""
    return _build_map(module, isa, name, _silu)


def build_relu2(module: ir.Module, isa: Isa, name: str) -> ir.Function:
    """``out = max(x, 0)²`` over elements ``[begin, end)``."""
    return _build_map(module, isa, name, _relu2)
