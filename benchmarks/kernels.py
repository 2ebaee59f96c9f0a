"""Kernel benchmark: ternary GEMV/GEMM per backend and ISA variant, against float32 BLAS.

For each shape (``rows × cols`` = output × input features) and token count it
measures, in the same run:

* ``blas``: dense float32 ``x @ W.T`` through numpy's BLAS (the baseline);
* ``numpy``: the reference ternary backend (exact, unoptimised);
* every other backend ``bitnet_sdk.backends.available()`` lists for the CPU,
  the ``llvm`` backend once per ISA variant this host runs (``llvm[avx2]``...).

and reports the median time, GB/s of weights read, GOPS (2·rows·cols·tokens),
speed-up over ``numpy`` and over ``blas``, the fraction of this machine's
memory bandwidth (``%bw``: weight bytes per second over a stream-like copy's
read+written bytes per second, measured here) and the fraction of the ISA's
peak int8 MAC rate (``%peak``: MACs/cycle/core from the table below × the
clock measured with a chain of dependent adds × threads; ``%peak/cpu``: the
same per CPU-second actually consumed, which stays meaningful when other
processes share the cores).

By default each measurement cycles through enough copies of the weights to
exceed twice the last-level cache, so weights come from DRAM as in real
decoding (``--hot`` keeps one copy cache-resident instead). The machine may be
shared: compare ratios from one run, not absolute numbers across runs.

    python benchmarks/kernels.py                       # everything
    python benchmarks/kernels.py --shapes 100m --tokens 1 --quick
    python benchmarks/kernels.py --markdown > table.md
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

SHAPES = {
    "bitnet2b": [(2560, 2560), (6912, 2560), (2560, 6912)],
    "100m": [(768, 768), (2048, 768), (768, 2048)],
}
#: Peak int8 multiply-accumulates per cycle per core, as vector width × issue rate
#: (vendor optimisation guides for Zen 4, Ice Lake/Sapphire Rapids, Neoverse N1;
#: other cores may differ by up to 2×).
PEAK_MACS_PER_CYCLE = {
    "avx512vnni": (64, "one 512-bit vpdpbusd (64 u8×s8) per cycle"),
    "avx512": (64, "one 512-bit vpmaddubsw (64 u8×s8) per cycle"),
    "avx2": (64, "two 256-bit vpmaddubsw (32 u8×s8) per cycle"),
    "neondot": (32, "two 128-bit sdot (16 s8×s8) per cycle"),
    "neon": (16, "two 128-bit smlal (8 s16) per cycle"),
    "generic": (16, "two 128-bit pmullw/pmaddwd (8 s16) per cycle"),
}


@dataclass
class Row:
    shape: tuple[int, int]
    tokens: int
    name: str
    seconds: float
    weight_bytes: int
    cpu_seconds: float = float("nan")

    @property
    def gops(self) -> float:
        return 2 * self.shape[0] * self.shape[1] * self.tokens / self.seconds / 1e9

    @property
    def gbps(self) -> float:
        return self.weight_bytes / self.seconds / 1e9


# -- machine ---------------------------------------------------------------------


def machine() -> dict[str, object]:
    from bitnet_kernels.isa import host_cpu, supported_isas
    from bitnet_kernels.threads import default_threads

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model, "llvm_cpu": host_cpu(), "threads": default_threads(),
        "isas": supported_isas(), "load_average": os.getloadavg(),
        "llc_bytes": _llc_bytes(),
    }  # fmt: skip


def _llc_bytes() -> int:
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        mult = {"K": 1024, "M": 1024**2}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KM")) * mult)
    return max(sizes, default=32 * 1024**2)


def clock_ghz() -> float:
    """Core clock from a chain of 100 dependent adds per iteration (1 cycle each)."""
    import llvmlite.binding as llvm
    from bitnet_kernels.compiler import jit_module
    from bitnet_kernels.irutil import I64, const, for_range, new_function
    from bitnet_kernels.isa import ISAS, host_arch
    from llvmlite import ir

    llvm.initialize_native_asmparser()
    asm_line = "addq $$1, $0" if host_arch() == "x86_64" else "add $0, $0, #1"
    module = ir.Module(name="clock")
    fn, b = new_function(module, "spin", [("n", I64)], I64)
    acc = b.alloca(I64)
    b.store(const(0), acc)
    chain = ir.InlineAsm(ir.FunctionType(I64, [I64]), "\n".join([asm_line] * 100), "=r,0", side_effect=True)
    with for_range(b, const(0), fn.args[0]):
        b.store(b.call(chain, [b.load(acc)]), acc)
    b.ret(b.load(acc))
    jm = jit_module(module, ISAS["generic"], use_cache=False)
    spin = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(jm.address("spin"))
    best = 0.0
    for _ in range(5):
        t = time.thread_time()
        spin(1_000_000)
        best = max(best, 100e6 / max(time.thread_time() - t, 1e-9) / 1e9)
    return best


def memory_bandwidth(threads: int, nbytes: int = 256 * 1024**2) -> dict[str, float]:
    """Stream-like copy (bytes read + written) and read-only (sum) bandwidth in GB/s.

    Best time over 1 and ``threads`` threads (on a shared machine more threads
    can be slower), so it estimates what the memory system delivers.
    """
    from bitnet_kernels.threads import get_pool, split_range

    src = np.ones(nbytes // 8, dtype=np.int64)
    dst = np.empty_like(src)
    best = {"copy": 0.0, "read": 0.0}
    for n in sorted({1, threads}):
        pool, slices = get_pool(n), split_range(0, src.size, n, 4096)
        copy = timeit(lambda p=pool, sl=slices: p.run(lambda b, e: np.copyto(dst[b:e], src[b:e]), sl),
                      1.0, best=True)  # fmt: skip
        read = timeit(lambda p=pool, sl=slices: p.run(lambda b, e: src[b:e].sum(), sl), 1.0, best=True)
        best["copy"] = max(best["copy"], 2 * nbytes / copy[0] / 1e9)
        best["read"] = max(best["read"], nbytes / read[0] / 1e9)
    return best


def startup(isa: str) -> dict[str, float]:
    """Kernel build time in a fresh process with an empty cache (cold), then again (warm)."""
    code = (
        "import json, time; t = time.perf_counter(); from bitnet_kernels import KernelLibrary;"
        f"lib = KernelLibrary({isa!r}, 1); s = lib.compile_stats;"
        "print(json.dumps({'hit': s.cache_hit, 'build': s.seconds, 'total': time.perf_counter() - t}))"
    )
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, BITNET_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            t = time.perf_counter()
            res = json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                            capture_output=True, text=True).stdout)  # fmt: skip
            assert res["hit"] == (label == "warm"), res
            out[f"{label}_build"] = res["build"]
            out[f"{label}_import_and_build"] = res["total"]
            out[f"{label}_process"] = time.perf_counter() - t
    return out


# -- measuring -------------------------------------------------------------------


def timeit(
    fn: Callable[[], object], min_time: float = 0.3, max_reps: int = 200, best: bool = False
) -> tuple[float, float]:
    """``(wall, cpu)`` seconds per call of ``fn`` after one warm-up call, over ``min_time`` or
    ``max_reps`` calls: medians, or minima with ``best``. ``cpu`` is this process's CPU time
    (all threads), which the other users of a shared machine do not inflate."""
    fn()
    walls: list[float] = []
    cpus: list[float] = []
    start = time.perf_counter()
    while len(walls) < max_reps and (time.perf_counter() - start < min_time or len(walls) < 3):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    pick = min if best else statistics.median
    return pick(walls), pick(cpus)


def copies_for(nbytes: int, budget: int) -> int:
    return max(1, -(-budget // max(nbytes, 1)))


def weight_bytes(w: object, rows: int, cols: int) -> int:
    if hasattr(w, "nbytes"):
        return int(w.nbytes)  # type: ignore[attr-defined]
    if hasattr(w, "q") and hasattr(w, "scale"):
        return int(w.q.nbytes + w.scale.nbytes)  # type: ignore[attr-defined]
    return rows * cols // 4


def contenders(args: argparse.Namespace) -> list[tuple[str, object]]:
    """``(label, backend)``: every usable CPU backend, llvm once per runnable ISA."""
    try:
        from bitnet_sdk import backends

        names = [i.name for i in backends.available() if i.usable("cpu")]
        get = backends.get
    except ImportError:  # an SDK without the plugin host: the two we know
        names, get = ["llvm", "numpy"], None
    out: list[tuple[str, object]] = []
    for name in names:
        if args.backends and name not in args.backends:
            continue
        if name == "llvm":
            from bitnet_kernels.isa import supported_isas
            from bitnet_llvm import LlvmBackend

            for isa in supported_isas():
                if not args.isas or isa in args.isas:
                    out.append((f"llvm[{isa}]", LlvmBackend(isa=isa, num_threads=args.threads)))
        elif get is not None:
            out.append((name, get(name, "cpu")))
        else:
            from bitnet_numpy import NumpyBackend

            out.append((name, NumpyBackend()))
    return out


def _timed_rotation(call: Callable[[object], object], items: list[object], **kw: float) -> tuple[float, float]:
    """``timeit`` of ``call(item)``, cycling through ``items`` (weights that exceed the cache)."""
    counter = iter(range(1 << 62))
    return timeit(lambda: call(items[next(counter) % len(items)]), **kw)


def _case(rows: int, cols: int, tokens: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(rows * 31 + cols)
    q = rng.integers(-1, 2, size=(rows, cols), dtype=np.int8)
    return q, rng.standard_normal((tokens, cols)).astype(np.float32)


def blas_times(cases: list[tuple[int, int, int]], budget: int) -> list[float]:
    """Median seconds of dense float32 ``x @ W.T`` per case (run in a worker process)."""
    out = []
    for rows, cols, tokens in cases:
        q, x = _case(rows, cols, tokens)
        first = q.astype(np.float32) * np.float32(0.02)
        dense = [first] + [first.copy() for _ in range(copies_for(first.nbytes, budget) - 1)]
        out.append(_timed_rotation(lambda w, x=x: x @ w.T, dense)[0])  # type: ignore[attr-defined]
    return out


def blas_rows(cases: list[tuple[int, int, int]], budget: int, threads: int) -> list[Row]:
    """The BLAS baseline at 1 thread and at ``threads``, each in its own process (BLAS reads its
    thread count at load); the faster one per case is kept and named ``blas(<n>t)``."""
    best: list[tuple[float, int]] = [(float("inf"), 0)] * len(cases)
    for n in sorted({1, threads}):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(n), OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
        proc = subprocess.run([sys.executable, __file__, "--blas-worker", json.dumps([cases, budget])],
                              env=env, check=True, capture_output=True, text=True)  # fmt: skip
        for i, sec in enumerate(json.loads(proc.stdout)):
            best[i] = min(best[i], (sec, n))
    return [Row((r, c), t, f"blas({n}t)", sec, r * c * 4) for (r, c, t), (sec, n) in zip(cases, best, strict=True)]


def run_case(rows: int, cols: int, tokens: int, backs: list[tuple[str, object]],
             budget: int, quick: bool) -> list[Row]:  # fmt: skip
    """Every contender on one case (the BLAS baseline is measured separately)."""
    from bitnet_sdk.ternary import TernaryTensor

    q, x = _case(rows, cols, tokens)
    t = TernaryTensor.from_scalar(q, 0.02)
    out: list[Row] = []
    for label, backend in backs:
        slow = label == "numpy" and tokens > 1
        if slow and quick:
            continue
        prepare, matmul = backend.prepare_weights, backend.matmul  # type: ignore[attr-defined]
        w0 = prepare(t)
        nb = weight_bytes(w0, rows, cols)
        ws = [w0] + [prepare(t) for _ in range(copies_for(nb, budget) - 1)]
        sec, cpu = _timed_rotation(lambda w, m=matmul, x=x: m(w, x), ws,
                                   min_time=0.0 if slow else 0.3, max_reps=3 if slow else 200)  # fmt: skip
        out.append(Row((rows, cols), tokens, label, sec, nb, cpu))
    return out


def elementwise(isa: str, threads: int) -> list[str]:
    """Fused element-wise kernels against ``bitnet_sdk.backends.ops`` (numpy), median µs."""
    from bitnet_kernels import KernelLibrary

    from bitnet_sdk.backends import ops

    lib = KernelLibrary.shared(isa, threads)
    rng = np.random.default_rng(0)
    lines = ["| op | shape | numpy µs | llvm µs | ×numpy |", "|---|---|---|---|---|"]
    for shape in [(1, 2560), (128, 2560), (1, 6912), (128, 6912), (1, 128256)]:
        x = rng.standard_normal(shape).astype(np.float32)
        w = rng.standard_normal(shape[-1]).astype(np.float32)
        pairs = {
            "rms_norm": (partial(ops.rms_norm, x, w, 1e-6), partial(lib.rms_norm, x, w, 1e-6)),
            "softmax": (partial(ops.softmax, x), partial(lib.softmax, x)),
            "silu": (partial(ops.silu, x), partial(lib.silu, x)),
            "relu2": (partial(ops.relu2, x), partial(lib.relu2, x)),
        }
        for op, (ref, fast) in pairs.items():
            a, b = timeit(ref, 0.2)[0], timeit(fast, 0.2)[0]
            lines.append(f"| {op} | {shape[0]}×{shape[1]} | {a * 1e6:.1f} | {b * 1e6:.1f} | {a / b:.1f} |")
    return lines


# -- reporting -------------------------------------------------------------------


def report(rows: list[Row], mach: dict, bw: dict, ghz: float, threads: int, markdown: bool) -> str:
    head = ["shape", "tokens", "backend", "ms", "GB/s", "GOPS", "×numpy", "×blas", "%bw", "%peak",
            "%peak/cpu"]  # fmt: skip
    lines = []
    for r in rows:
        same = [o for o in rows if o.shape == r.shape and o.tokens == r.tokens]
        ref = next((o for o in same if o.name == "numpy"), None)
        blas = next(o for o in same if o.name.startswith("blas"))
        isa = r.name[5:-1] if r.name.startswith("llvm[") else None
        core_peak = PEAK_MACS_PER_CYCLE[isa][0] * ghz * 1e9 if isa else None
        peak = core_peak * threads if core_peak else None
        macs = r.shape[0] * r.shape[1] * r.tokens / r.seconds
        macs_per_cpu_s = r.shape[0] * r.shape[1] * r.tokens / r.cpu_seconds if r.cpu_seconds > 0 else None
        lines.append([
            f"{r.shape[0]}×{r.shape[1]}", str(r.tokens), r.name, f"{r.seconds * 1e3:.3f}",
            f"{r.gbps:.1f}", f"{r.gops:.0f}",
            f"{ref.seconds / r.seconds:.1f}" if ref else "-", f"{blas.seconds / r.seconds:.1f}",
            f"{100 * r.gbps / bw['copy']:.0f}", f"{100 * macs / peak:.0f}" if peak else "-",
            f"{100 * macs_per_cpu_s / core_peak:.0f}" if core_peak and macs_per_cpu_s else "-",
        ])  # fmt: skip
    if markdown:
        table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        table += ["| " + " | ".join(line) + " |" for line in lines]
    else:
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        table = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
        table += ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="bitnet2b,100m", help="comma-separated: " + ", ".join(SHAPES))
    ap.add_argument("--tokens", default="1,128", help="token counts (1: GEMV)")
    ap.add_argument("--threads", type=int, default=None, help="default: BITNET_NUM_THREADS or all CPUs")
    ap.add_argument("--backends", default="", help="only these backends (comma-separated)")
    ap.add_argument("--isas", default="", help="only these llvm variants (comma-separated)")
    ap.add_argument("--hot", action="store_true", help="one cache-resident copy of the weights")
    ap.add_argument("--quick", action="store_true", help="skip the slow numpy GEMM and start-up runs")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--json", type=Path, help="also write raw results here")
    ap.add_argument("--blas-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.blas_worker:
        cases, budget = json.loads(args.blas_worker)
        print(json.dumps(blas_times([tuple(c) for c in cases], budget)))
        return 0
    args.backends = [b for b in args.backends.split(",") if b]
    args.isas = [i for i in args.isas.split(",") if i]
    from bitnet_kernels.threads import default_threads

    threads = default_threads(args.threads)
    mach = machine()
    ghz = clock_ghz()
    bw = memory_bandwidth(threads)
    print(f"# machine: {mach['cpu_model']} (LLVM: {mach['llvm_cpu']}), {threads} threads, "
          f"ISAs {mach['isas']}, clock {ghz:.2f} GHz (dependent-add chain), "
          f"load average {', '.join(f'{v:.1f}' for v in mach['load_average'])}")  # fmt: skip
    print(f"# memory: copy {bw['copy']:.1f} GB/s (read+write), read {bw['read']:.1f} GB/s, {threads} threads; "
          f"LLC {mach['llc_bytes'] // 1024**2} MiB")  # fmt: skip
    for isa in mach["isas"]:  # type: ignore[union-attr]
        macs, how = PEAK_MACS_PER_CYCLE[isa]
        print(f"# peak {isa}: {macs} MAC/cycle/core ({how}) = {2 * macs * ghz * threads:.0f} GOPS")
    if not args.quick:
        st = startup(mach["isas"][0])  # type: ignore[index]
        print(f"# start-up ({mach['isas'][0]}): cold build {st['cold_build']:.2f} s, warm {st['warm_build']:.3f} s; "
              f"import+build cold {st['cold_import_and_build']:.2f} s, warm {st['warm_import_and_build']:.2f} s")  # fmt: skip
    budget = 0 if args.hot else 2 * int(mach["llc_bytes"])  # type: ignore[call-overload]
    backs = contenders(args)
    cases = [(rows, cols, int(t)) for group in args.shapes.split(",") for rows, cols in SHAPES[group]
             for t in args.tokens.split(",")]  # fmt: skip
    results = blas_rows(cases, budget, threads)
    for rows, cols, tokens in cases:
        results += run_case(rows, cols, tokens, backs, budget, args.quick)
        print(f"  measured {rows}×{cols} n={tokens}", file=sys.stderr, flush=True)
    results.sort(key=lambda r: cases.index((*r.shape, r.tokens)))
    print(report(results, mach, bw, ghz, threads, args.markdown))
    if not args.quick:
        print()
        print("\n".join(elementwise(mach["isas"][0], threads)))  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps({"machine": mach, "bandwidth": bw, "ghz": ghz,
                                         "rows": [r.__dict__ for r in results]}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
