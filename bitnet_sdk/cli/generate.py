"""``bitnet generate MODEL -p PROMPT``: stream a completion to the terminal.

Text is written as tokens arrive; timing (load, prompt and generation
tokens/s) and the finish reason go to stderr so stdout holds only the text.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a BitNet GGUF model",
        description="Load a BitNet b1.58 GGUF model and stream a completion of PROMPT.",
    )
    p.add_argument("model", help="path to a .gguf model file")
    p.add_argument("-p", "--prompt", required=True, help="prompt text")
    p.add_argument("-n", "--max-tokens", type=int, default=128, help="tokens to generate (default 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus probability mass (1.0 = off)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--backend", default="auto", help="compute backend (default: auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitnet_sdk.backends import BackendError
    from bitnet_sdk.model.loader import load

    if _is_dense(args.model):  # a dense (ONNX-derived) network predicts, it has no text
        print(f"bitnet generate: {args.model} is a dense model (architecture bitnet-dense), not a "
              "language model: it classifies or regresses arrays and has no text to generate. "
              "Run it with bitnet_sdk.load(path).predict(inputs) or POST /v1/inference with "
              "\"inputs\".", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    try:
        model = load(args.model, backend=args.backend)
    except (OSError, ValueError, BackendError) as exc:
        print(f"bitnet generate: cannot load {args.model}: {exc}", file=sys.stderr)
        return 1
    load_s = time.perf_counter() - t0
    print(f"loaded {args.model} on {model.backend.name} in {load_s:.2f} s", file=sys.stderr)

    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    last = None
    try:
        for step in model.generate(
            args.prompt,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            stop=args.stop,
        ):
            if step.text:
                out.write(step.text)
                out.flush()
            last = step
    except ValueError as exc:
        print(f"\nbitnet generate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\n[interrupted]", file=sys.stderr)
        return 130
    out.write("\n")
    if last is not None and last.timings is not None:
        t = last.timings
        print(
            f"[{last.finish_reason}] prompt: {t.prompt_tokens} tokens, "
            f"{t.prompt_tokens_per_s:.1f} tok/s; generated: {t.generated_tokens} tokens, "
            f"{t.generated_tokens_per_s:.1f} tok/s",
            file=sys.stderr,
        )
    return 0


def _is_dense(path: str) -> bool:
    """Whether ``path`` is a ternary dense model (False when it cannot be read: load says why)."""
    from bitnet_sdk.formats.constants import ARCH_BITNET_DENSE
    from bitnet_sdk.model.gguf_file import read_model

    try:
        return read_model(path, strict=False).arch == ARCH_BITNET_DENSE
    except (OSError, ValueError):
        return False
