"""The native barrier: no thread passes before all have arrived, round after round."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from bitnet_kernels.barrier import BARRIER_WORDS, build_barrier
from bitnet_kernels.compiler import jit_module
from bitnet_kernels.irutil import I64, const, entry_alloca, for_range, gep
from bitnet_kernels.isa import select_isa
from bitnet_kernels.layout import aligned_zeros
from bitnet_kernels.threads import ThreadPool
from llvmlite import ir

#: Slots are a cache line apart so that the threads' writes do not share one.
_STRIDE = 8


def _build() -> ir.Module:
    """``rounds(state, slots, tid, n, rounds, yield) -> mismatches``: each round a thread writes
    the round number to its slot, meets the others, reads every slot, and meets them again."""
    module = ir.Module(name="barrier_test")
    barrier = build_barrier(module, select_isa(None), "barrier")
    p64 = I64.as_pointer()
    yield_ty = barrier.args[2].type
    fn = ir.Function(module, ir.FunctionType(I64, [p64, p64, I64, I64, I64, yield_ty]), "rounds")
    state, slots, tid, n, rounds, yield_fn = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    bad = entry_alloca(b, I64, "bad")
    b.store(const(0), bad)
    with for_range(b, const(1), b.add(rounds, const(1)), 1, "r") as r:
        b.store(r, gep(b, slots, b.mul(tid, const(_STRIDE))))
        b.call(barrier, [state, n, yield_fn])
        with for_range(b, const(0), n, 1, "i") as i:
            seen = b.load(gep(b, slots, b.mul(i, const(_STRIDE))))
            b.store(b.add(b.load(bad), b.zext(b.icmp_signed("!=", seen, r), I64)), bad)
        b.call(barrier, [state, n, yield_fn])
    b.ret(b.load(bad))
    return module


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_every_thread_sees_every_write_of_the_round(threads: int) -> None:
    isa = select_isa(None)
    jit = jit_module(_build(), isa, use_cache=False)
    fn = ctypes.CFUNCTYPE(ctypes.c_int64, *(ctypes.c_void_p,) * 2, *(ctypes.c_int64,) * 3, ctypes.c_void_p)(
        jit.address("rounds"))
    sched_yield = ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value
    state = aligned_zeros(BARRIER_WORDS, np.int64)
    slots = aligned_zeros(threads * _STRIDE, np.int64)
    mismatches: list[int] = []
    pool = ThreadPool(threads)
    try:
        ran = pool.run_gang(lambda tid, n: mismatches.append(
            fn(state.ctypes.data, slots.ctypes.data, tid, n, 2000, sched_yield)))
    finally:
        pool.close()
    assert ran == threads
    assert mismatches == [0] * threads
    assert state[0] == 0 and state[8] == (4000 if threads > 1 else 0)  # counter reset; one generation a meeting


def test_a_busy_pool_runs_the_gang_on_the_caller_alone() -> None:
    pool = ThreadPool(2)
    calls: list[tuple[int, int]] = []
    try:
        inner: list[int] = []
        pool.run_gang(lambda tid, n: inner.append(pool.run_gang(lambda t, m: calls.append((t, m)))))
    finally:
        pool.close()
    assert sorted(inner) == [1, 1]  # both members found the pool busy and ran alone
    assert calls == [(0, 1), (0, 1)]
