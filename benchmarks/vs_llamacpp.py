"""BitNet SDK against llama.cpp (llama-cpp-python) on the same GGUF file and thread count.

Builds synthetic BitNet b1.58 files in llama.cpp's TQ2_0 (random ternary
weights, squared-ReLU FFN, tied embedding stored F16) in the shapes of
``benchmarks/generate.py``, then for each size and thread count runs both
engines in fresh processes, interleaved (the order alternates every round),
for several rounds, and prints medians and ratios of:

* **decode tok/s**: one token per forward pass with the KV cache, greedy;
* **prompt tok/s**: the whole prompt in one call, logits of the last position;
* **load s**: opening the file until the first forward pass can run, in a
  process whose page cache already holds the file (both engines alike);
  our first load of a file (which writes the backend's weight cache) is
  printed separately as "first load";
* **peak RSS**: the peak resident set of that process (mapped file pages it touched count).

Every process runs the same prompt token ids; the KV cache holds
``--ctx`` positions for llama.cpp (allocated up front) and grows on demand for
us. The memory bandwidth of this machine is measured in the same run (a
streaming read of a buffer larger than the caches, on 1 and N threads): a
decode step must read every weight once, so ``bandwidth / bytes per token``
bounds decode tok/s for both engines.

    python benchmarks/vs_llamacpp.py                # 100m and 2b, 1 and 2 threads, 3 rounds
    python benchmarks/vs_llamacpp.py --quick        # 100m only, 2 rounds, fewer tokens
    python benchmarks/vs_llamacpp.py --sizes 2b --threads 2 --rounds 5 --dir /tmp/bench

Ours runs three times: ``bitnet`` (llvm backend, output head in the file's F16,
decode through the compiled one-call step: the default), ``bitnet-int8``
(``BITNET_LLVM_HEAD=int8``: the head as int8 rows, half the bytes; see
docs/benchmarks.md for its measured quality cost) and ``bitnet-per-op``
(``BITNET_LLVM_COMPILED_STEP=off``: one kernel call per op for decode and
prompt, the compiled step's reference; the default runs prompts as one native
call per chunk too). Targets are
checked for the default; ``--engines`` picks a subset. Ratios are ours / llama.cpp: above 1 is better for tok/s, below 1 is better
for load time and RSS. The machine is shared and noisy: compare the ratios of
one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import SIZES, machine, param_count  # (sibling benchmark script)

ENGINES = ("llama.cpp", "bitnet", "bitnet-int8", "bitnet-per-op")
#: Our engines and their environment: the llvm backend with the head in the file's type and the
#: compiled decode step (default), the opt-in int8 head, and the per-op decode step.
OURS = {
    "bitnet": {"BITNET_LLVM_HEAD": "native"},
    "bitnet-int8": {"BITNET_LLVM_HEAD": "int8"},
    "bitnet-per-op": {"BITNET_LLVM_HEAD": "native", "BITNET_LLVM_COMPILED_STEP": "off"},
}
#: Issue targets, ours / llama.cpp (tok/s: at least; load s and RSS: absolute, see TARGET_ABS).
TARGETS = {("2b", "decode"): 1.2, ("100m", "decode"): 1.0, ("2b", "prompt"): 2.0, ("100m", "prompt"): 1.0}
TARGET_ABS = {("2b", "load_s"): 2.0, ("2b", "rss_mb"): 1400.0}


# -- the measured processes -------------------------------------------------------------


def _prompt_ids(vocab: int, n: int) -> list[int]:
    import numpy as np

    return [int(i) for i in np.random.default_rng(0).integers(0, vocab, n)]


def _run_llamacpp(path: str, threads: int, prompt: int, gen: int, ctx: int) -> dict[str, float]:
    import numpy as np
    from llama_cpp import Llama

    t0 = time.perf_counter()
    llm = Llama(model_path=path, n_ctx=ctx, n_batch=512, n_threads=threads, n_threads_batch=threads,
                verbose=False)  # fmt: skip
    load_s = time.perf_counter() - t0
    ids = _prompt_ids(llm.n_vocab(), prompt)
    t0 = time.perf_counter()
    llm.eval(ids)
    pp_s = time.perf_counter() - t0
    vocab = llm.n_vocab()

    def last_logits() -> np.ndarray:  # without logits_all, llama-cpp-python keeps no scores
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))

    token = int(np.argmax(last_logits()))
    t0 = time.perf_counter()
    for _ in range(gen):
        llm.eval([token])
        token = int(np.argmax(last_logits()))
    tg_s = time.perf_counter() - t0
    llm.close()
    return {"load_s": load_s, "prompt": prompt / pp_s, "decode": gen / tg_s}


def _run_bitnet(path: str, threads: int, prompt: int, gen: int, ctx: int) -> dict[str, float]:
    import numpy as np

    from bitnet_sdk.model.loader import load

    os.environ["BITNET_NUM_THREADS"] = str(threads)  # the head kind comes from BITNET_LLVM_HEAD
    t0 = time.perf_counter()
    model = load(path, backend="llvm")
    load_s = time.perf_counter() - t0
    ids = _prompt_ids(model.config.vocab_size, prompt)
    cache = model.new_cache(ctx)
    t0 = time.perf_counter()
    logits = model.forward(ids, 0, cache, last_only=True)
    pp_s = time.perf_counter() - t0
    token, pos = int(np.argmax(logits[0])), prompt
    t0 = time.perf_counter()
    for _ in range(gen):
        logits = model.forward([token], pos, cache)
        token, pos = int(np.argmax(logits[0])), pos + 1
    tg_s = time.perf_counter() - t0
    return {"load_s": load_s, "prompt": prompt / pp_s, "decode": gen / tg_s,  # type: ignore[dict-item]
            "variant": model.backend.variant, "step": type(model.step).__name__}  # fmt: skip


def worker(engine: str, path: str, threads: int, prompt: int, gen: int, ctx: int) -> dict[str, float]:
    run = _run_llamacpp if engine == "llama.cpp" else _run_bitnet
    result = run(path, threads, prompt, gen, ctx)
    result["rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``). Not ``ru_maxrss``: Linux carries that
    across ``execve``, so a child would report its parent's peak at the fork."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # other systems


def measure(engine: str, path: Path, threads: int, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", engine, str(path), str(threads),
           str(args.prompt_tokens), str(args.gen_tokens), str(args.ctx)]  # fmt: skip
    env = {**os.environ, "BITNET_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), **OURS.get(engine, {})}  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=args.timeout, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- memory bandwidth ---------------------------------------------------------------------


def memory_bandwidth(threads: int, mib: int = 512, repeats: int = 5) -> float:
    """Streaming-read bandwidth in GB/s: ``threads`` threads each taking the maximum of
    their slice of a ``mib`` MiB float32 buffer (numpy's fastest streaming reduction here;
    it releases the GIL); best of ``repeats``."""
    import numpy as np

    buf = np.ones(mib * 2**20 // 4, dtype=np.float32)
    parts = np.array_split(buf, threads)
    best = float("inf")
    for _ in range(repeats):
        workers = [threading.Thread(target=np.max, args=(p,)) for p in parts]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - t0)
    return buf.nbytes / best / 1e9


def bytes_per_token(path: Path) -> int:
    """Bytes a decode step must read: every projection and the (tied) output head."""
    from bitnet_sdk.model.gguf_file import read_model

    mf = read_model(path)
    head = "output.weight" if "output.weight" in mf else "token_embd.weight"
    total = sum(mf.tensor_info(n).n_bytes or 0 for n in mf if mf.is_projection(n))
    return total + (mf.tensor_info(head).n_bytes or 0)


# -- the run --------------------------------------------------------------------------------


def build(size: str, directory: Path) -> Path:
    """The size's file under ``directory``, built unless it is already there."""
    from bitnet_sdk.testing.synthetic import build_model

    s = dict(SIZES[size])
    vocab = s.pop("vocab")
    path = directory / f"vs-llamacpp-{size}-tq2_0.gguf"
    if not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        build_model(tmp, qtype="tq2_0", vocab=vocab, hidden_act="relu2", context_length=4096, seed=0, **s)
        tmp.rename(path)
        print(f"  built {path.name} in {time.perf_counter() - t0:.0f} s")
    return path


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)


def _target(size: str, key: str, ours: float, theirs: float) -> str:
    if (size, key) in TARGETS:
        goal = TARGETS[(size, key)]
        return f"≥ {goal}× {'met' if ours / theirs >= goal else 'MISSED'}"
    if (size, key) in TARGET_ABS:
        goal = TARGET_ABS[(size, key)]
        return f"< {goal:g} {'met' if ours < goal else 'MISSED'}"
    return ""


def report(size: str, threads: int, runs: dict[str, list[dict[str, float]]], bw: float, bpt: int) -> None:
    ours = [e for e in OURS if runs.get(e)]
    theirs = runs["llama.cpp"]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"  threads {threads}: {len(theirs)} rounds, medians; load average {load}"
          f" (memory bandwidth {bw:.1f} GB/s → decode bound {bw * 1e9 / bpt:.1f} tok/s at"
          f" {bpt / 1e6:.0f} MB per token with an F16 head)")  # fmt: skip
    print(f"    {'':<14}{'llama.cpp':>11}" + "".join(f"{e:>15}{'ratio':>8}" for e in ours) + "   target (bitnet)")
    for key, label, fmt in (("decode", "decode tok/s", ".1f"), ("prompt", "prompt tok/s", ".1f"),
                            ("load_s", "load s", ".2f"), ("rss_mb", "peak RSS MB", ".0f")):  # fmt: skip
        a = _median(theirs, key)
        cells = ""
        for engine in ours:
            b = _median(runs[engine], key)
            cells += f"{b:>15{fmt}}{b / a:>7.2f}×"
        print(f"    {label:<14}{a:>11{fmt}}{cells}   {_target(size, key, _median(runs['bitnet'], key), a)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="100m only, 2 rounds, 32 prompt / 16 decode tokens")
    p.add_argument("--sizes", default=None, help="comma-separated (default 100m,2b): " + ",".join(SIZES))
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--rounds", type=int, default=None, help="rounds per engine (default 3, quick 2)")
    p.add_argument("--prompt-tokens", type=int, default=None, help="default 64 (quick 32)")
    p.add_argument("--gen-tokens", type=int, default=None, help="default 32 (quick 16)")
    p.add_argument("--ctx", type=int, default=1024, help="KV cache positions")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ",".join(ENGINES))
    p.add_argument("--timeout", type=float, default=1800, help="seconds per measured process")
    p.add_argument("--dir", default=None, help="keep (and reuse) the built files here")
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        engine, path, threads, pp, tg, ctx = args.worker
        print(json.dumps(worker(engine, path, int(threads), int(pp), int(tg), int(ctx))))
        return 0
    sizes = [s for s in (args.sizes or ("100m" if args.quick else "100m,2b")).split(",") if s]
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.prompt_tokens = args.prompt_tokens or (32 if args.quick else 64)
    args.gen_tokens = args.gen_tokens or (16 if args.quick else 32)
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    engines = tuple(e for e in ENGINES if e in args.engines.split(","))
    if "llama.cpp" not in engines or "bitnet" not in engines:
        p.error("--engines must include llama.cpp and bitnet (the ratios compare them)")

    import llama_cpp

    print(f"machine: {machine()}")
    print(f"llama-cpp-python {llama_cpp.__version__}; prompt {args.prompt_tokens} tokens, decode"
          f" {args.gen_tokens} tokens, greedy; KV cache {args.ctx} positions; TQ2_0 files")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.dir) if args.dir else Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("BITNET_CACHE_DIR", str(directory / "bitnet-cache"))
        for size in sizes:
            print(f"\n{size}: {param_count(SIZES[size]) / 1e6:.0f}M params")
            path = build(size, directory)
            bpt = bytes_per_token(path)
            print(f"  file {path.stat().st_size / 1e6:.0f} MB")
            for threads in thread_counts:
                for engine in engines:  # our first loads write our caches; all find the file in the page cache
                    first = measure(engine, path, threads, args)
                    if engine in OURS:
                        print(f"  threads {threads}: {engine} ({first.get('variant')}, {first.get('step')})"
                              f" first load {first['load_s']:.2f} s")  # fmt: skip
                runs: dict[str, list[dict[str, float]]] = {e: [] for e in engines}
                bws = []
                for r in range(args.rounds):
                    bws.append(memory_bandwidth(threads))
                    for engine in engines[r % len(engines) :] + engines[: r % len(engines)]:
                        runs[engine].append(measure(engine, path, threads, args))
                report(size, threads, runs, statistics.median(bws), bpt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
