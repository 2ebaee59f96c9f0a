"""A thread barrier in native code, for kernels that every worker thread enters once.

Why: the fused forward step (``bitnet_kernels.fused``) runs all threads
through one native call per step, with a few meeting points per layer
(after a matmul whose rows were split, after attention). Meeting in Python
would need the GIL and a lock hand-off per stage; here it is an atomic
counter and a generation word, the scheme of ggml's CPU thread pool:

* each arriving thread reads the generation, then increments the counter;
* the last one to arrive resets the counter and bumps the generation
  (release), which lets every waiter through (acquire);
* a waiter spins with the CPU's pause/yield hint for ``SPIN_ROUNDS`` reads,
  then calls ``sched_yield`` between reads, so a descheduled peer on an
  oversubscribed machine gets the core instead of being starved by spinners.

C signature (``void``)::

    barrier(int64_t *state, int64_t n_threads, int32_t (*yield_fn)(void))

``state`` points to two ``int64`` words, the counter and the generation, that
all participants share (zeroed before first use; counter and generation sit
in ``state[0]`` and ``state[8]``, a cache line apart, so ``state`` needs 72
bytes). ``yield_fn`` is ``sched_yield`` (the caller passes its address, so
the module needs no symbol resolution). With ``n_threads == 1`` it returns
at once.
"""

from __future__ import annotations

from llvmlite import ir

from bitnet_kernels.irutil import I32, I64, const, declare_intrinsic, entry_alloca, gep
from bitnet_kernels.isa import Isa

__all__ = ["BARRIER_WORDS", "SPIN_ROUNDS", "build_barrier"]

#: int64 words the barrier state occupies (counter at 0, generation at 8: separate cache lines).
BARRIER_WORDS = 9
#: Pause-hinted reads of the generation before a waiter starts yielding its time slice.
SPIN_ROUNDS = 256


def _emit_pause(b: ir.IRBuilder, isa: Isa) -> None:
    """The spin-wait hint of the architecture (``pause`` on x86, ``yield`` on Arm), if any."""
    if isa.arch == "x86_64":
        b.call(declare_intrinsic(b.module, "llvm.x86.sse2.pause", ir.VoidType(), []), [])
    elif isa.arch == "aarch64":
        b.call(declare_intrinsic(b.module, "llvm.aarch64.hint", ir.VoidType(), [I32]), [ir.Constant(I32, 1)])


def build_barrier(module: ir.Module, isa: Isa, name: str) -> ir.Function:
    """Add the barrier ``name`` (signature in the module docstring) to ``module``."""
    yield_ty = ir.FunctionType(I32, [])
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64.as_pointer(), I64, yield_ty.as_pointer()]), name)
    state, n, yield_fn = fn.args
    fn.attributes.add("nounwind")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    spins = entry_alloca(b, I64, "spins")
    wait, last, spin, check, done = (fn.append_basic_block(s) for s in ("wait", "last", "spin", "check", "done"))
    count, gen = state, gep(b, state, 8)
    b.cbranch(b.icmp_signed("<=", n, const(1)), done, wait)

    b.position_at_end(wait)
    my_gen = b.load_atomic(gen, "acquire", 8)
    arrived = b.atomic_rmw("add", count, const(1), "acq_rel")
    b.store(const(0), spins)
    b.cbranch(b.icmp_signed("==", arrived, b.sub(n, const(1))), last, check)

    b.position_at_end(last)  # everyone is here: reset for the next use, then release the waiters
    b.store_atomic(const(0), count, "monotonic", 8)
    b.atomic_rmw("add", gen, const(1), "release")
    b.branch(done)

    b.position_at_end(check)
    b.cbranch(b.icmp_signed("==", b.load_atomic(gen, "acquire", 8), my_gen), spin, done)

    b.position_at_end(spin)
    rounds = b.load(spins)
    b.store(b.add(rounds, const(1)), spins)
    with b.if_else(b.icmp_signed("<", rounds, const(SPIN_ROUNDS))) as (pause, give_up):
        with pause:
            _emit_pause(b, isa)
        with give_up:
            b.call(yield_fn, [])
    b.branch(check)

    b.position_at_end(done)
    b.ret_void()
    return fn
