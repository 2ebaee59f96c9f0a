"""Generation benchmark: prompt processing and generation tokens/s per backend.

Builds synthetic BitNet b1.58 models (random ternary weights, TQ2_0) in a
temporary directory, then measures every available backend on each in a
fresh subprocess, so that the peak resident memory (``ru_maxrss``) belongs to
that backend alone. Ratios are against the numpy reference backend measured
in the same run (the machine is shared and noisy: compare ratios, not
absolute numbers across runs).

    python benchmarks/generate.py                      # 100m and 700m, every backend
    python benchmarks/generate.py --sizes 2b --backends llvm --gen-tokens 8
    python benchmarks/generate.py --sizes tiny         # seconds, for a smoke test

Sizes (``--sizes``, comma-separated):

=====  ======  =======  =====  =========  ======  =========
name   layers  d_model  d_ff   heads/kv   vocab   params
=====  ======  =======  =====  =========  ======  =========
tiny   2       256      512    4/2        512     ~1.3M
100m   12      768      2048   12/4       32000   ~100M
700m   24      1536     4096   16/4       64000   ~690M
2b     30      2560     6912   20/5       128256  ~2.4B (2B-4T's shape; ~1.2 GB file)
=====  ======  =======  =====  =========  ======  =========
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(n_layers=2, d_model=256, d_ff=512, n_heads=4, n_kv_heads=2, vocab=512),
    "100m": dict(n_layers=12, d_model=768, d_ff=2048, n_heads=12, n_kv_heads=4, vocab=32000),
    "700m": dict(n_layers=24, d_model=1536, d_ff=4096, n_heads=16, n_kv_heads=4, vocab=64000),
    "2b": dict(n_layers=30, d_model=2560, d_ff=6912, n_heads=20, n_kv_heads=5, vocab=128256),
}


def param_count(s: dict[str, int]) -> int:
    head = s["d_model"] // s["n_heads"]
    attn = 2 * s["d_model"] * s["n_heads"] * head + 2 * s["d_model"] * s["n_kv_heads"] * head
    return s["n_layers"] * (attn + 3 * s["d_model"] * s["d_ff"]) + s["vocab"] * s["d_model"]


def build(size: str, directory: Path) -> tuple[Path, float]:
    from bitnet_sdk.testing.synthetic import build_model

    s = dict(SIZES[size])
    vocab = s.pop("vocab")
    path = directory / f"bench-{size}.gguf"
    t0 = time.perf_counter()
    build_model(path, qtype="tq2_0", vocab=vocab, hidden_act="relu2", context_length=4096, seed=0, **s)
    return path, time.perf_counter() - t0


def worker(path: str, backend: str, prompt_tokens: int, gen_tokens: int) -> dict[str, float | str]:
    """Runs in the child process: load, prompt, generate; returns the measurements."""
    import numpy as np

    from bitnet_sdk.model.loader import load

    t0 = time.perf_counter()
    model = load(path, backend=backend)
    load_s = time.perf_counter() - t0
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, prompt_tokens)
    cache = model.new_cache(prompt_tokens + gen_tokens + 1)
    t0 = time.perf_counter()
    logits = model.forward(ids, 0, cache, last_only=True)
    pp_s = time.perf_counter() - t0
    token, pos = int(np.argmax(logits[0])), prompt_tokens
    t0 = time.perf_counter()
    for _ in range(gen_tokens):
        logits = model.forward([token], pos, cache)
        token, pos = int(np.argmax(logits[0])), pos + 1
    tg_s = time.perf_counter() - t0
    return {
        "backend": model.backend.name,
        "variant": model.backend.variant,
        "load_s": load_s,
        "pp_tok_s": prompt_tokens / pp_s,
        "tg_tok_s": gen_tokens / tg_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(path: Path, backend: str, prompt_tokens: int, gen_tokens: int, timeout: float) -> dict[str, float | str]:
    cmd = [sys.executable, __file__, "--worker", str(path), backend, str(prompt_tokens), str(gen_tokens)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy as np

    return f"{cpu}, {os.cpu_count()} logical cores, Python {sys.version.split()[0]}, numpy {np.__version__}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100m,700m", help="comma-separated: " + ",".join(SIZES))
    p.add_argument("--backends", default="", help="comma-separated names (default: every available)")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--gen-tokens", type=int, default=16)
    p.add_argument("--timeout", type=float, default=900, help="seconds per backend and size")
    p.add_argument("--dir", default=None, help="build model files under this directory")
    p.add_argument("--worker", nargs=4, metavar=("PATH", "BACKEND", "PP", "TG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        path, backend, pp, tg = args.worker
        print(json.dumps(worker(path, backend, int(pp), int(tg))))
        return 0

    from bitnet_sdk.backends import available

    names = [b for b in args.backends.split(",") if b] or [i.name for i in available() if i.available]
    names = sorted(names, key=lambda n: n != "numpy")  # the baseline first
    print(f"machine: {machine()}")
    print(f"prompt {args.prompt_tokens} tokens, generate {args.gen_tokens} tokens, greedy, TQ2_0 files")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in [s for s in args.sizes.split(",") if s]:
            path, build_s = build(size, Path(tmp))
            mb = path.stat().st_size / 2**20
            print(f"\n{size}: {param_count(SIZES[size]) / 1e6:.0f}M params, {mb:.0f} MB file (built in {build_s:.1f} s)")
            print(f"  {'backend':<18}{'load s':>8}{'pp tok/s':>10}{'tg tok/s':>10}{'peak RSS MB':>13}{'pp ×':>8}{'tg ×':>8}")
            base: dict[str, float | str] | None = None
            for name in names:
                try:
                    r = measure(path, name, args.prompt_tokens, args.gen_tokens, args.timeout)
                except subprocess.CalledProcessError as exc:
                    print(f"  {name:<18} failed: {exc.stderr.strip().splitlines()[-1] if exc.stderr else exc}")
                    continue
                except subprocess.TimeoutExpired:
                    print(f"  {name:<18} timed out after {args.timeout:.0f} s")
                    continue
                if name == "numpy":
                    base = r
                pp_x = f"{float(r['pp_tok_s']) / float(base['pp_tok_s']):.1f}" if base else "-"
                tg_x = f"{float(r['tg_tok_s']) / float(base['tg_tok_s']):.1f}" if base else "-"
                label = f"{r['backend']}{'/' + str(r['variant']) if r['variant'] else ''}"
                print(
                    f"  {label:<18}{float(r['load_s']):>8.2f}{float(r['pp_tok_s']):>10.2f}"
                    f"{float(r['tg_tok_s']):>10.2f}{float(r['peak_rss_mb']):>13.0f}{pp_x:>8}{tg_x:>8}"
                )
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
