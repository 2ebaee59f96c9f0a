"""``bitnet inspect FILE``: architecture, size, quantization and memory needs of a model.

Exit status: 0 when the file was described, 1 when it cannot be opened as a GGUF
file or its metadata does not describe a runnable model (what could be read is
still printed).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["format_text", "register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="describe a BitNet GGUF model file",
        description=(
            "Print the architecture, parameter count, quantization types and bits per weight, "
            "file size, context length, layers/heads, vocabulary and the memory the model needs "
            "(weights + float32 KV cache at full context)."
        ),
    )
    p.add_argument("file", help="path to a .gguf file (a language model or a dense network)")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=run)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # unreachable


def format_text(doc: dict[str, Any]) -> str:
    """Human-readable rendering of a ``model_metadata`` document."""
    q, mem, tok = doc["quantization"], doc["memory"], doc["tokenizer"]
    lines = [
        f"file          {doc['path']} ({_size(doc['file_size'])}, GGUF v{doc['gguf_version']})",
        f"name          {doc['name'] or '-'}",
        f"architecture  {doc['architecture'] or '-'}",
        f"parameters    {doc['parameters']:,} ({doc['ternary_parameters']:,} ternary)",
        f"quantization  ternary {', '.join(q['ternary_types']) or '-'}"
        + (f" at {q['ternary_bits_per_weight']} bits/weight" if q["ternary_bits_per_weight"] else "")
        + (f"; file type {q['file_type']}" if q["file_type"] else ""),
    ]
    for name, t in q["tensor_types"].items():
        lines.append(f"  {name:<11} {t['tensors']:>4} tensors {t['parameters']:>14,} weights  {t['bits_per_weight']} bits/weight")
    m = doc["model"]
    if m:
        lines += [
            f"context       {m['context_length']:,} tokens",
            f"layers        {m['layers']} (d_model {m['d_model']}, FFN {m['d_ff']}, {m['hidden_act']})",
            f"heads         {m['heads']} query / {m['kv_heads']} key-value, head size {m['head_dim']}",
            f"rope          {m['rope_style']}, theta {m['rope_theta']:g}",
            f"embeddings    {'tied' if m['tie_embeddings'] else 'separate output head'}",
        ]
    dense = doc.get("dense")
    if dense:
        shapes = ", ".join(f"{v['name']} {v['shape']}" for v in dense["inputs"])
        outs = ", ".join(f"{v['name']} {v['shape']}" for v in dense["outputs"])
        lines += [
            f"dense network {dense['linear_layers']} linear layers, {dense['nodes']} nodes",
            f"inputs        {shapes or '-'}",
            f"outputs       {outs or '-'}",
        ]
    elif "error" in tok:
        lines.append(f"tokenizer     unusable: {tok['error']}")
    else:
        lines.append(
            f"tokenizer     {tok['model']}" + (f"/{tok['pre']}" if tok["pre"] else "")
            + f", {tok['tokens']:,} tokens, bos {tok['bos_id']}, eos {tok['eos_id']}"
            + (", chat template" if tok["chat_template"] else "")
        )
    if "dense" in doc:
        lines.append(f"memory        weights {_size(mem['weights_bytes'])} (no KV cache)")
    else:
        lines += [
            f"memory        weights {_size(mem['weights_bytes'])} + KV cache {_size(mem['kv_cache_bytes'])}"
            f" = {_size(mem['total_bytes'])}",
            f"              ({mem['formula']})",
        ]
    lines += [f"error         {e}" for e in doc["errors"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from bitnet_sdk.loading import metadata as model_metadata
    from bitnet_sdk.model.gguf_file import GGUFFormatError

    try:
        doc = model_metadata(args.file)
    except (OSError, GGUFFormatError) as exc:
        message = f"{args.file}: {exc}"
        print(json.dumps({"path": args.file, "errors": [message]}) if args.json else f"error: {message}")
        return 1
    print(json.dumps(doc, indent=2) if args.json else format_text(doc))
    return 1 if doc["errors"] else 0
