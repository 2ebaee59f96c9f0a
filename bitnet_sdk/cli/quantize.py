"""``bitnet quantize SRC DST``: quantize a checkpoint, GGUF or ONNX model to a ternary GGUF file.

Shows a progress bar (tqdm, on stderr) while tensors are written and prints the report: sizes,
compression, time, and the accuracy measured on the written file (``--json`` prints the whole
report as JSON on stdout instead). Exit status: 0 on success, 1 when the source cannot be
quantized, 130 when interrupted; in every failing case the destination is left untouched.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bitnet_sdk import formats

__all__ = ["format_report", "register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="quantize a model to ternary weights (GGUF)",
        description=(
            "Quantize a Hugging Face BitNet checkpoint (folder), a GGUF model (F32/F16/BF16, or "
            "ternary to another ternary type without loss) or an ONNX feed-forward network to a "
            "ternary GGUF file, and report size, time and measured accuracy."
        ),
    )
    p.add_argument("src", help="checkpoint folder, .gguf, .onnx, or .safetensors/.bin with config.json")
    p.add_argument("dst", help="output .gguf path (written atomically)")
    p.add_argument("--type", dest="qtype", default="tq2_0", choices=formats.QTYPES,
                   help="ternary format (default: tq2_0)")
    p.add_argument("--format", default="gguf", choices=("gguf",), help="output container (default: gguf)")
    p.add_argument("--keep", action="append", default=[], metavar="GLOB",
                   help="keep tensors matching GLOB in high precision (repeatable; dense models)")
    p.add_argument("--high-precision-type", choices=("f32", "f16", "bf16", "q8_0"),
                   help="storage of kept matrices (default: f16 for LLMs, f32 for dense models)")
    p.add_argument("--text", action="append", default=[], metavar="TEXT",
                   help="measure perplexity on TEXT (repeatable; language models)")
    p.add_argument("--text-file", type=Path, action="append", default=[], metavar="FILE",
                   help="measure perplexity on the contents of FILE (repeatable)")
    p.add_argument("--max-tokens", type=int, default=512, help="tokens per perplexity text (default: 512)")
    p.add_argument("--calibration-samples", type=int, default=None, metavar="N",
                   help="random calibration inputs per layer / model (default: 16)")
    p.add_argument("--arch", help="output architecture of a language model (default: by --type)")
    p.add_argument("--backend", default="auto", help="backend for the measurements (default: auto)")
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _fmt_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _f(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def format_report(d: dict[str, Any]) -> str:
    """The human-readable report of ``QuantizationReport.to_dict()``."""
    s = d["summary"]
    lines = [
        f"OK  {d['output']}  ({d['model_kind']}, {d['arch']}, {d['qtype'].upper()})",
        f"  source       {d['source']} ({d['source_kind']})",
        f"  size         {_fmt_bytes(d['original_bytes'])} -> {_fmt_bytes(d['quantized_bytes'])}"
        f"  (compression {d['compression_ratio']:.2f}x, memory -{100 * d['memory_reduction']:.1f}%)",
        f"  weights      {d['parameters']:,} parameters, {d['bits_per_weight']:.3f} bits/weight, "
        f"{d['tensors_quantized']} ternary / {d['tensors_kept']} kept",
        f"  time         {d['seconds']:.2f} s",
        f"  layers       relative error mean {_f(s['mean_relative_error'])} max {_f(s['max_relative_error'])}; "
        f"output cosine mean {_f(s['mean_output_cosine'])} min {_f(s['min_output_cosine'])}",
    ]
    if d.get("calibration"):
        c = d["calibration"]
        lines.append(f"  perplexity   quantized {_f(c['quantized_perplexity'], '.3f')}, "
                     f"source (float) {_f(c['source_perplexity'], '.3f')} over {c['tokens']} tokens")
    if d.get("agreement"):
        a = d["agreement"]
        lines.append(f"  agreement    predictions {_f(a['prediction_agreement'], '.2%')}, output cosine "
                     f"{_f(a['output_cosine'])}, max |diff| {_f(a['max_abs_diff'], '.3g')} on {a['samples']} samples")
    lines += [f"  warning      {w}" for w in d.get("warnings", [])]
    return "\n".join(lines)


class _Bar:
    """A tqdm bar driven by the pipeline's progress callback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, done: int, total: int, stage: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="tensor", file=sys.stderr, dynamic_ncols=True, leave=False)
        self.bar.set_postfix_str(stage[-48:], refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from bitnet_sdk.quantization.errors import QuantizationError
    from bitnet_sdk.quantization.pipeline import quantize

    dst = Path(args.dst)
    if dst.exists() and not args.force:
        print(f"error: {dst} exists (use --force to replace it)", file=sys.stderr)
        return 1
    texts = list(args.text) + [p.read_text(encoding="utf-8") for p in args.text_file]
    if not getattr(args, "verbose", False):
        logging.getLogger("gguf").setLevel(logging.WARNING)  # its writer logs every file at INFO
    bar = _Bar(not args.no_progress and not args.json)
    try:
        report = quantize(
            args.src, dst, args.qtype, format=args.format, progress=bar,
            keep_high_precision=args.keep or None, high_precision_type=args.high_precision_type,
            calibration=args.calibration_samples, text=texts or None, max_tokens=args.max_tokens,
            arch=args.arch, backend=args.backend,
        )
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except (QuantizationError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    d = report.to_dict()
    print(json.dumps(d, indent=2) if args.json else format_report(d))
    return 0
