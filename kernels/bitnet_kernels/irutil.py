"""Small helpers for writing kernels with ``llvmlite.ir``: types, constants, loops, intrinsics.

Loop-carried values live in ``alloca`` slots of the entry block; LLVM's
``mem2reg``/SROA (part of every optimisation pipeline) turns them into
registers, which keeps the builders free of hand-written phi bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from llvmlite import ir

__all__ = [
    "F32",
    "I8",
    "I16",
    "I32",
    "I64",
    "PTR8",
    "const",
    "declare_intrinsic",
    "entry_alloca",
    "fmax",
    "fmin",
    "for_lanes",
    "for_range",
    "gep",
    "lane_indices",
    "load_vec",
    "new_function",
    "reduce_lanes",
    "splat",
    "store_vec",
    "vec",
]

I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
PTR8 = I8.as_pointer()


def vec(elem: ir.Type, lanes: int) -> ir.Type:
    """``<lanes x elem>``, or ``elem`` itself for one lane (scalar tails share the code)."""
    return elem if lanes == 1 else ir.VectorType(elem, lanes)


def splat(ty: ir.Type, value: int | float) -> ir.Constant:
    """A constant of type ``ty`` (scalar or vector) with every lane equal to ``value``."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, value)] * ty.count)
    return ir.Constant(ty, value)


def const(value: int) -> ir.Constant:
    """An ``i64`` constant (indices, sizes)."""
    return ir.Constant(I64, value)


def new_function(
    module: ir.Module, name: str, args: Sequence[tuple[str, ir.Type]], ret: ir.Type | None = None
) -> tuple[ir.Function, ir.IRBuilder]:
    """Declare ``name(args)`` with external linkage and return it with a builder at its entry."""
    fn = ir.Function(module, ir.FunctionType(ret or ir.VoidType(), [t for _, t in args]), name)
    for arg, (arg_name, ty) in zip(fn.args, args, strict=True):
        arg.name = arg_name
        if isinstance(ty, ir.PointerType):
            arg.add_attribute("noalias")
    fn.attributes.add("nounwind")
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def declare_intrinsic(module: ir.Module, name: str, ret: ir.Type, args: Sequence[ir.Type]) -> ir.Function:
    """``declare ret @name(args)`` once per module."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ret, list(args)), name)


def entry_alloca(builder: ir.IRBuilder, ty: ir.Type, name: str = "") -> ir.AllocaInstr:
    """An ``alloca`` placed in the entry block, where ``mem2reg`` can promote it."""
    with builder.goto_entry_block():
        entry = builder.block
        if entry.instructions:
            builder.position_before(entry.instructions[0])
        return builder.alloca(ty, name=name)


def gep(builder: ir.IRBuilder, ptr: ir.Value, index: ir.Value | int) -> ir.Value:
    """``ptr + index`` elements (``index`` an ``i64`` value or a Python int)."""
    idx = const(index) if isinstance(index, int) else index
    return builder.gep(ptr, [idx])


def load_vec(builder: ir.IRBuilder, ptr: ir.Value, ty: ir.Type) -> ir.Value:
    """Unaligned load of ``ty`` from an element pointer."""
    return builder.load(builder.bitcast(ptr, ty.as_pointer()), align=1)


def store_vec(builder: ir.IRBuilder, value: ir.Value, ptr: ir.Value) -> None:
    """Unaligned store of ``value`` at an element pointer."""
    builder.store(value, builder.bitcast(ptr, value.type.as_pointer()), align=1)


@contextmanager
def for_range(
    builder: ir.IRBuilder, start: ir.Value, stop: ir.Value, step: int | ir.Value = 1, name: str = "i"
) -> Iterator[ir.Value]:
    """``for (i = start; i < stop; i += step)`` (signed ``i64``); yields ``i``.

    The body is emitted inside the ``with`` block; the builder is left after the loop.
    """
    pre = builder.block
    header = builder.append_basic_block(f"{name}.head")
    body = builder.append_basic_block(f"{name}.body")
    end = builder.append_basic_block(f"{name}.end")
    builder.branch(header)
    builder.position_at_end(header)
    i = builder.phi(I64, name=name)
    i.add_incoming(start, pre)
    builder.cbranch(builder.icmp_signed("<", i, stop), body, end)
    builder.position_at_end(body)
    yield i
    nxt = builder.add(i, const(step) if isinstance(step, int) else step, name=f"{name}.next")
    i.add_incoming(nxt, builder.block)
    builder.branch(header)
    builder.position_at_end(end)


def for_lanes(
    builder: ir.IRBuilder, begin: ir.Value, end: ir.Value, lanes: int, body: Callable[[int, ir.Value], None], name: str = "j"
) -> None:
    """Call ``body(width, index)`` over ``[begin, end)``: ``lanes``-wide steps, then a scalar tail.

    ``body`` emits code for elements ``index .. index + width - 1``; it is
    called twice while building (once per width), not once per element.
    """
    count = builder.sub(end, begin)
    vec_end = builder.add(begin, builder.sub(count, builder.srem(count, const(lanes))))
    if lanes > 1:
        with for_range(builder, begin, vec_end, lanes, f"{name}v") as j:
            body(lanes, j)
    with for_range(builder, vec_end, end, 1, f"{name}s") as j:
        body(1, j)


def fmax(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    """``a > b ? a : b`` (lane-wise); ``b`` when either is NaN."""
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)


def fmin(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    """``a < b ? a : b`` (lane-wise); ``b`` when either is NaN."""
    return builder.select(builder.fcmp_ordered("<", a, b), a, b)


def reduce_lanes(builder: ir.IRBuilder, value: ir.Value, op: Callable[[ir.Value, ir.Value], ir.Value]) -> ir.Value:
    """Fold the lanes of ``value`` with ``op`` by halving (a scalar is returned as is).

    The order is fixed (a tree), so results are deterministic for a given width.
    """
    ty = value.type
    if not isinstance(ty, ir.VectorType):
        return value
    n = ty.count
    while n > 1:
        half = n // 2
        lo = builder.shuffle_vector(value, value, lane_indices(range(half)))
        hi = builder.shuffle_vector(value, value, lane_indices(range(half, n)))
        value, n = op(lo, hi), half
    return builder.extract_element(value, ir.Constant(I32, 0))


def lane_indices(idx: Iterable[int]) -> ir.Constant:
    """A ``<n x i32>`` constant of lane numbers, the mask operand of ``shufflevector``."""
    values = list(idx)
    return ir.Constant(ir.VectorType(I32, len(values)), values)
