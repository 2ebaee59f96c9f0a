"""What the int8 output head costs in quality, against the head in the file's type (F16).

Loads one model twice on the llvm backend (``head="native"`` and
``head="int8"``), runs the same token sequence through both (one forward pass,
logits at every position) and prints top-1 agreement, the largest absolute
logit difference (also relative to each position's logit range) and the
decode time of the head alone for both. Synthetic models (random weights)
have flatter logits than trained ones, so top-1 agreement here is a
pessimistic figure.

    python benchmarks/head_quality.py                   # 100m shape, 300 positions
    python benchmarks/head_quality.py --size 2b --positions 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import SIZES  # (sibling benchmark script)
from vs_llamacpp import build


def head_seconds(model: object, reps: int = 5) -> float:
    """Best time of one decode-step head product (one token)."""
    backend, w = model.backend, model.weights.output  # type: ignore[attr-defined]
    x = np.random.default_rng(1).standard_normal((1, model.config.d_model)).astype(np.float32)  # type: ignore[attr-defined]
    backend.head(w, x)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        backend.head(w, x)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="100m", choices=sorted(SIZES))
    p.add_argument("--positions", type=int, default=300)
    p.add_argument("--dir", default=None, help="keep (and reuse) the built file here")
    args = p.parse_args(argv)

    from bitnet_llvm import LlvmBackend

    from bitnet_sdk.model.loader import load

    with tempfile.TemporaryDirectory() as tmp:
        path = build(args.size, Path(args.dir or tmp))
        ids = np.random.default_rng(0).integers(0, SIZES[args.size]["vocab"], args.positions)
        logits, times = {}, {}
        for kind in ("native", "int8"):
            model = load(path, backend=LlvmBackend(head=kind))
            logits[kind] = model.forward(ids).astype(np.float64)
            times[kind] = head_seconds(model)
            del model
    ref, q = logits["native"], logits["int8"]
    top1 = float(np.mean(ref.argmax(1) == q.argmax(1)))
    err = np.abs(ref - q).max(1)
    span = ref.max(1) - ref.min(1)
    print(f"{args.size}, {args.positions} positions: int8 head vs F16 head")
    print(f"  top-1 agreement        {top1:.4f}")
    print(f"  max |Δlogit|           {err.max():.4f}  (median per position {np.median(err):.4f})")
    print(f"  max |Δlogit| / range   {(err / span).max():.5f}")
    print(f"  head time per token    F16 {times['native'] * 1e3:.1f} ms, int8 {times['int8'] * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
