"""Quantizing BF16 checkpoints natively: a bit-pattern histogram, then lookup and pack in one pass.

The quantizer (``bitnet_sdk.quantization.bf16``) works on BF16 weights through their bit
patterns: every per-weight function is a 65,536-entry table. These kernels do its two passes
over the memory-mapped weights, one native loop each, instead of several numpy passes over
int64 index copies:

* ``bf16_hist(raw, n, hist)``: ``hist[raw[i]] += 1`` for ``i < n`` (``hist``: int64[65536],
  added to, so chunks may accumulate). The absmean scale comes from it (exactly, in Python).
* ``tern_<format>(raw, table, lut, units, out, d16)``: codes ``table[raw[i]]`` (uint8 in
  {0, 1, 2}: ternary value + 1) packed into ``units`` blocks of the format, written to ``out``.
  ``tq2_0``/``tq1_0``: blocks of 256 weights (66 / 54 bytes) whose fp16 scale is ``d16``
  (its bit pattern) when the block has a non-zero weight, else 0; ``tq1_0`` maps each
  base-3 group through ``lut`` (``ceil(v * 256 / 243)``, 243 entries). ``i2_s``: groups of 128
  weights → 32 bytes (``lut``, ``d16`` unused; the tensor's trailer is written by the caller).
  ``tern_<format>_codes(raw, table, lut, units, out, d16, codes)`` also writes every weight's
  ternary value (``code - 1``, int8) to ``codes``: the report's products need them, and
  storing them in the packing pass saves a second lookup pass.
* ``lookup16(raw, table, n, out) -> int64``: ``out[i] = table[raw[i]]`` (uint16: BF16 → F16 bit
  patterns, for tensors kept as F16), returning how many results have an all-ones F16
  exponent (infinities and NaNs: the caller refuses those).

The byte layouts are those of ``bitnet_sdk.formats.codes`` (the numpy packers, themselves
byte-equal to gguf-py's): ``tests/quantization`` checks the results byte for byte.
All integers are ``int64_t``; pointers are ``void *``.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np
from llvmlite import ir

from bitnet_kernels.compiler import JitModule, jit_module
from bitnet_kernels.irutil import (
    I8,
    I16,
    I32,
    I64,
    PTR8,
    const,
    entry_alloca,
    for_range,
    gep,
    new_function,
)
from bitnet_kernels.isa import Isa, select_isa

__all__ = ["FORMATS", "TernarizeKernels", "build_ternarize_module"]

PREFIX = "bitnet_"
#: Format -> (weights per unit, bytes per unit).
FORMATS = {"tq2_0": (256, 66), "tq1_0": (256, 54), "i2_s": (128, 32)}
_PATTERNS = 1 << 16
_PACK_ARGS = ("raw", "table", "lut", "units", "out", "d16", "codes")


def _build_hist(module: ir.Module) -> None:
    fn, b = new_function(module, f"{PREFIX}bf16_hist", [("raw", PTR8), ("n", I64), ("hist", PTR8)])
    raw_p, n, hist_p = fn.args
    raw = b.bitcast(raw_p, I16.as_pointer())
    hist = b.bitcast(hist_p, I64.as_pointer())
    with for_range(b, const(0), n, 1, "i") as i:
        slot = gep(b, hist, b.zext(b.load(gep(b, raw, i)), I64))
        b.store(b.add(b.load(slot), const(1)), slot)
    b.ret_void()


class _Packer:
    """Builds one ``tern_<format>`` function: helpers over its arguments."""

    def __init__(self, module: ir.Module, fmt: str, codes: bool) -> None:
        names = _PACK_ARGS if codes else _PACK_ARGS[:-1]
        self.fn, self.b = new_function(module, f"{PREFIX}tern_{fmt}{'_codes' if codes else ''}",
                                       [(a, I64 if a in ("units", "d16") else PTR8) for a in names])  # fmt: skip
        args = dict(zip(names, self.fn.args, strict=True))
        self.codes = args.get("codes")
        b = self.b
        self.raw = b.bitcast(args["raw"], I16.as_pointer())
        self.table, self.lut, self.out = args["table"], args["lut"], args["out"]
        self.units, self.d16 = args["units"], args["d16"]
        self.any = entry_alloca(b, I8, "any")  # OR of (code ^ 1) over the block: a non-zero weight

    def code(self, index: ir.Value) -> ir.Value:
        """The code (i8) of weight ``index``; noted in ``any`` when it is not 1 (zero)."""
        b = self.b
        c = b.load(gep(b, self.table, b.zext(b.load(gep(b, self.raw, index)), I64)))
        b.store(b.or_(b.load(self.any), b.xor(c, ir.Constant(I8, 1))), self.any)
        if self.codes is not None:
            b.store(b.sub(c, ir.Constant(I8, 1)), gep(b, self.codes, index))
        return c

    def store(self, value: ir.Value, index: ir.Value) -> None:
        self.b.store(value, gep(self.b, self.out, index))

    def block_scale(self, at: ir.Value) -> None:
        """The fp16 scale (little-endian) at ``out[at]``: ``d16`` if the block had a non-zero
        weight, else 0."""
        b = self.b
        d = b.select(b.icmp_unsigned("!=", b.load(self.any), ir.Constant(I8, 0)), self.d16, const(0))
        self.store(b.trunc(d, I8), at)
        self.store(b.trunc(b.lshr(d, const(8)), I8), b.add(at, const(1)))


def _build_tq2(module: ir.Module, codes: bool) -> None:
    """Per 256 weights: 64 bytes, byte ``h*32 + l`` = codes ``h*128 + j*32 + l`` (j = 0..3) at
    bits ``2j``; then the scale."""
    p = _Packer(module, "tq2_0", codes)
    b = p.b
    with for_range(b, const(0), p.units, 1, "blk") as blk:
        src, dst = b.mul(blk, const(256)), b.mul(blk, const(66))
        b.store(ir.Constant(I8, 0), p.any)
        for h in range(2):
            with for_range(b, const(0), const(32), 1, f"l{h}") as lane:
                byte = ir.Constant(I8, 0)
                for j in range(4):
                    c = p.code(b.add(src, b.add(lane, const(h * 128 + j * 32))))
                    byte = b.or_(byte, b.shl(c, ir.Constant(I8, 2 * j)))
                p.store(byte, b.add(dst, b.add(lane, const(h * 32))))
        p.block_scale(b.add(dst, const(64)))
    b.ret_void()


def _build_tq1(module: ir.Module, codes: bool) -> None:
    """Per 256 weights: base-3 groups (most significant trit first) through ``lut``: 32 bytes of
    five trits ``i*32 + l``, 16 of five trits ``160 + i*16 + l``, 4 of four trits ``240 + i*4 + l``
    (times 3: the fifth trit is 0); then the scale."""
    p = _Packer(module, "tq1_0", codes)
    b = p.b
    parts = ((0, 32, 5, 0), (160, 16, 5, 32), (240, 4, 4, 48))  # (first weight, bytes, trits, first byte)
    with for_range(b, const(0), p.units, 1, "blk") as blk:
        src, dst = b.mul(blk, const(256)), b.mul(blk, const(54))
        b.store(ir.Constant(I8, 0), p.any)
        for first, nbytes, trits, at in parts:
            with for_range(b, const(0), const(nbytes), 1, f"l{first}") as lane:
                v = ir.Constant(I32, 0)
                for i in range(5):
                    v = b.mul(v, ir.Constant(I32, 3))
                    if i < trits:
                        c = p.code(b.add(src, b.add(lane, const(first + i * nbytes))))
                        v = b.add(v, b.zext(c, I32))
                byte = b.load(gep(b, p.lut, b.zext(v, I64)))
                p.store(byte, b.add(dst, b.add(lane, const(at))))
        p.block_scale(b.add(dst, const(52)))
    b.ret_void()


def _build_i2s(module: ir.Module, codes: bool) -> None:
    """Per 128 weights: 32 bytes, byte ``l`` = codes ``l, 32 + l, 64 + l, 96 + l`` at bits 6, 4, 2, 0."""
    p = _Packer(module, "i2_s", codes)
    b = p.b
    with for_range(b, const(0), p.units, 1, "grp") as grp:
        src, dst = b.mul(grp, const(128)), b.mul(grp, const(32))
        with for_range(b, const(0), const(32), 1, "l") as lane:
            byte = ir.Constant(I8, 0)
            for j in range(4):
                c = p.code(b.add(src, b.add(lane, const(j * 32))))
                byte = b.or_(byte, b.shl(c, ir.Constant(I8, 6 - 2 * j)))
            p.store(byte, b.add(dst, lane))
    b.ret_void()


def _build_lookup16(module: ir.Module) -> None:
    args = [("raw", PTR8), ("table", PTR8), ("n", I64), ("out", PTR8)]
    fn, b = new_function(module, f"{PREFIX}lookup16", args, ret=I64)
    raw_p, table_p, n, out_p = fn.args
    raw, table, out = (b.bitcast(a, I16.as_pointer()) for a in (raw_p, table_p, out_p))
    bad = entry_alloca(b, I64, "bad")
    b.store(const(0), bad)
    exp = ir.Constant(I16, 0x7C00)
    with for_range(b, const(0), n, 1, "i") as i:
        v = b.load(gep(b, table, b.zext(b.load(gep(b, raw, i)), I64)))
        b.store(v, gep(b, out, i))
        inf_nan = b.icmp_unsigned("==", b.and_(v, exp), exp)
        b.store(b.add(b.load(bad), b.zext(inf_nan, I64)), bad)
    b.ret(b.load(bad))


def build_ternarize_module(isa: Isa) -> ir.Module:
    """The histogram, the packers (with and without codes) and the F16 lookup, as one module."""
    module = ir.Module(name=f"bitnet_ternarize_{isa.name}")
    _build_hist(module)
    _build_lookup16(module)
    for codes in (False, True):
        _build_tq2(module, codes)
        _build_tq1(module, codes)
        _build_i2s(module, codes)
    return module


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


class TernarizeKernels:
    """The compiled kernels of this module for one ISA (see the module docstring)."""

    _shared: TernarizeKernels | None = None
    _lock = threading.Lock()

    def __init__(self, isa: str | Isa | None = None, *, use_cache: bool = True) -> None:
        self.isa = isa if isinstance(isa, Isa) else select_isa(isa)
        self._jit: JitModule = jit_module(build_ternarize_module(self.isa), self.isa, use_cache=use_cache)
        p, i = ctypes.c_void_p, ctypes.c_int64
        self._hist = ctypes.CFUNCTYPE(None, p, i, p)(self._jit.address(f"{PREFIX}bf16_hist"))
        self._lookup16 = ctypes.CFUNCTYPE(i, p, p, i, p)(self._jit.address(f"{PREFIX}lookup16"))
        self._pack: dict[str, Any] = {
            fmt: ctypes.CFUNCTYPE(None, p, p, p, i, p, i)(self._jit.address(f"{PREFIX}tern_{fmt}")) for fmt in FORMATS
        }
        self._pack_codes: dict[str, Any] = {
            fmt: ctypes.CFUNCTYPE(None, p, p, p, i, p, i, p)(self._jit.address(f"{PREFIX}tern_{fmt}_codes"))
            for fmt in FORMATS
        }

    @classmethod
    def shared(cls) -> TernarizeKernels:
        """One instance per process (the host's best ISA), built on first use."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def histogram(self, raw: np.ndarray, hist: np.ndarray) -> None:
        """Add the counts of ``raw``'s bit patterns (uint16, C-contiguous) to ``hist`` (int64[65536])."""
        if raw.dtype != np.uint16 or not raw.flags.c_contiguous:
            raise ValueError("raw must be C-contiguous uint16")
        if hist.dtype != np.int64 or hist.shape != (_PATTERNS,) or not hist.flags.c_contiguous or not hist.flags.writeable:
            raise ValueError("hist must be a writable int64 array of 65536 counts")
        self._hist(_address(raw), raw.size, _address(hist))

    def pack(self, fmt: str, raw: np.ndarray, table: np.ndarray, lut: np.ndarray, d16: int, out: np.ndarray,
             codes: np.ndarray | None = None) -> None:  # fmt: skip
        """Pack ``table[raw]`` (codes 0..2) as ``fmt`` into ``out`` (see the module docstring);
        with ``codes`` (int8 shaped like ``raw``), store each weight's ternary value there too."""
        weights, nbytes = FORMATS[fmt]
        if raw.dtype != np.uint16 or not raw.flags.c_contiguous or raw.size % weights:
            raise ValueError(f"raw must be C-contiguous uint16 in whole units of {weights} weights")
        units = raw.size // weights
        if out.dtype != np.uint8 or out.size != units * nbytes or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"out must be a writable contiguous uint8 array of {units * nbytes} bytes")
        if table.dtype != np.uint8 or table.shape != (_PATTERNS,) or not table.flags.c_contiguous:
            raise ValueError("table must be a contiguous uint8 array of 65536 codes")
        if lut.dtype != np.uint8 or lut.shape != (243,) or not lut.flags.c_contiguous:
            raise ValueError("lut must be a contiguous uint8 array of 243 bytes")
        if np.any(table > 2):
            raise ValueError("codes must be 0, 1 or 2")
        args = (_address(raw), _address(table), _address(lut), units, _address(out), int(d16) & 0xFFFF)
        if codes is None:
            self._pack[fmt](*args)
            return
        if codes.dtype != np.int8 or codes.size != raw.size or not codes.flags.c_contiguous or not codes.flags.writeable:
            raise ValueError("codes must be a writable contiguous int8 array of raw's size")
        self._pack_codes[fmt](*args, _address(codes))

    def lookup16(self, raw: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, int]:
        """``(table[raw], count of F16 infinities/NaNs in it)`` for uint16 ``raw`` (C-contiguous)
        and a uint16 table of 65536 entries."""
        if raw.dtype != np.uint16 or not raw.flags.c_contiguous:
            raise ValueError("raw must be C-contiguous uint16")
        if table.dtype != np.uint16 or table.shape != (_PATTERNS,) or not table.flags.c_contiguous:
            raise ValueError("table must be a contiguous uint16 array of 65536 entries")
        out = np.empty(raw.shape, dtype=np.uint16)
        bad = self._lookup16(_address(raw), _address(table), raw.size, _address(out))
        return out, int(bad)
