"""Repacking kernel: int8 ternary ``q`` into the 2-bit layout of ``bitnet_kernels.layout``.

Model loading repacks every projection once; in numpy that is a dozen passes
over the weights (``pack_ternary``, the reference this kernel is tested
against), natively it is one read and one write.

C signature::

    int32_t pack(const int8_t *q, int64_t ldq, int64_t rows, int64_t cols,
                 uint8_t *out, int64_t nblocks, int64_t row_begin, int64_t row_end)

Writes the blocks of padded rows ``row_begin <= r < row_end`` (multiples of
4; rows ``>= rows`` and columns ``>= cols`` are padding, stored as ``q = 0``)
and returns non-zero when some ``q`` outside {-1, 0, 1} was seen (the output
is then meaningless and the caller raises).
"""

from __future__ import annotations

from llvmlite import ir

from bitnet_kernels.irutil import (
    I8,
    I32,
    I64,
    PTR8,
    const,
    entry_alloca,
    for_range,
    gep,
    load_vec,
    new_function,
    reduce_lanes,
    splat,
    store_vec,
)
from bitnet_kernels.isa import Isa
from bitnet_kernels.layout import BLOCK, BLOCK_BYTES, ROW_GROUP

__all__ = ["PACK_ARGS", "build_pack"]

PACK_ARGS = ("q", "ldq", "rows", "cols", "out", "nblocks", "row_begin", "row_end")
_BYTES = ir.VectorType(I8, BLOCK_BYTES)


def _full_block(b: ir.IRBuilder, src: ir.Value, dst: ir.Value, bad: ir.AllocaInstr) -> None:
    """64 output bytes from 256 in-range weights: ``Σ_s (q[j + 64s] + 1) << 2s``."""
    byte = None
    for s in range(4):
        u = b.add(load_vec(b, gep(b, src, s * BLOCK_BYTES), _BYTES), splat(_BYTES, 1))
        wrong = b.sext(b.icmp_unsigned(">", u, splat(_BYTES, 2)), _BYTES)
        b.store(b.or_(b.load(bad), wrong), bad)
        shifted = b.shl(u, splat(_BYTES, 2 * s)) if s else u
        byte = shifted if byte is None else b.or_(byte, shifted)
    store_vec(b, byte, dst)


def _edge_block(b: ir.IRBuilder, args: dict[str, ir.Value], row: ir.Value, blk: ir.Value,
                dst: ir.Value, bad: ir.AllocaInstr) -> None:  # fmt: skip
    """A block touching the padding: byte by byte, padding weights stored as ``q = 0``."""
    row_ok = b.icmp_signed("<", row, args["rows"])
    with for_range(b, const(0), const(BLOCK_BYTES), 1, "j") as j:
        byte = ir.Constant(I8, 0)
        for s in range(4):
            col = b.add(b.mul(blk, const(BLOCK)), b.add(j, const(s * BLOCK_BYTES)))
            inside = b.and_(row_ok, b.icmp_signed("<", col, args["cols"]))
            with b.if_else(inside) as (then, otherwise):
                with then:
                    src = gep(b, args["q"], b.add(b.mul(row, args["ldq"]), col))
                    u_in = b.add(b.load(src), ir.Constant(I8, 1))
                    wrong = b.sext(b.icmp_unsigned(">", u_in, ir.Constant(I8, 2)), I8)
                    in_block = b.block
                with otherwise:
                    out_block = b.block
            u = b.phi(I8)
            u.add_incoming(u_in, in_block)
            u.add_incoming(ir.Constant(I8, 1), out_block)
            flag = b.phi(I8)
            flag.add_incoming(wrong, in_block)
            flag.add_incoming(ir.Constant(I8, 0), out_block)
            b.store(b.or_(b.load(bad), b.insert_element(splat(_BYTES, 0), flag, ir.Constant(I32, 0))), bad)
            byte = b.or_(byte, b.shl(u, ir.Constant(I8, 2 * s)) if s else u)
        b.store(byte, gep(b, dst, j))


def build_pack(module: ir.Module, isa: Isa, name: str) -> ir.Function:
    """Add the repacking kernel ``name`` (signature in the module docstring)."""
    types = [PTR8, I64, I64, I64, PTR8, I64, I64, I64]
    fn, b = new_function(module, name, list(zip(PACK_ARGS, types, strict=True)), I32)
    args = dict(zip(PACK_ARGS, fn.args, strict=True))
    bad = entry_alloca(b, _BYTES, "bad")
    b.store(splat(_BYTES, 0), bad)
    full_blocks = b.sdiv(args["cols"], const(BLOCK))
    with for_range(b, args["row_begin"], args["row_end"], 1, "row") as row:
        group, within = b.ashr(row, const(2)), b.and_(row, const(ROW_GROUP - 1))
        base = b.add(b.mul(b.mul(group, args["nblocks"]), const(BLOCK_BYTES * ROW_GROUP)),
                     b.mul(within, const(BLOCK_BYTES)))  # fmt: skip
        in_rows = b.icmp_signed("<", row, args["rows"])
        with for_range(b, const(0), args["nblocks"], 1, "blk") as blk:
            dst = gep(b, args["out"], b.add(base, b.mul(blk, const(BLOCK_BYTES * ROW_GROUP))))
            full = b.and_(in_rows, b.icmp_signed("<", blk, full_blocks))
            with b.if_else(full) as (then, otherwise):
                with then:
                    src = gep(b, args["q"], b.add(b.mul(row, args["ldq"]), b.mul(blk, const(BLOCK))))
                    _full_block(b, src, dst, bad)
                with otherwise:
                    _edge_block(b, args, row, blk, dst, bad)
    any_bad = reduce_lanes(b, b.load(bad), b.or_)
    b.ret(b.sext(any_bad, I32))
    return fn
