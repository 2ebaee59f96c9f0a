"""Quantization benchmark: throughput and peak memory of ``bitnet_sdk.quantization`` on a synthetic
BitNet checkpoint, against plain reads of the same bytes measured in the same run.

A random BitNet b1.58 checkpoint (``BitNetForCausalLM`` names, BF16 weights, a small byte-level
BPE tokenizer padded to the vocabulary size) is written to a temporary folder, then each of these
runs in a fresh process:

* ``read`` — the safetensors files read into a buffer (the memory-bandwidth bound: the files
  are in the page cache, having just been written);
* ``copy`` — ``shutil.copyfile`` of the safetensors files to the same folder (the I/O floor);
* ``read f32`` — every tensor memory-mapped and widened to float32, tensor by tensor (the least
  any quantizer must do);
* ``quantize <type>`` — ``bitnet_sdk.quantization.quantize(checkpoint, out.gguf, type)``: read,
  absmean-quantize, pack, write, re-validate, and measure every layer (the report);
* with ``--reference``, each ``quantize <type>`` is followed by the same run with the BF16 fast
  path off (``LLMOptions(fast=False)``: the float32 reference path), for a before/after ratio;
* with ``--numpy``, by the fast path without its native kernels (``BITNET_QUANT_NATIVE=off``:
  the numpy passes), for the native kernels' ratio.

Reported per run: wall seconds, MB/s of source weights (BF16 bytes), the ratio of that throughput
to ``copy`` and ``read f32``, peak RSS (``VmHWM``, which counts memory-mapped file pages the
process touched) and peak anonymous RSS (``RssAnon`` sampled every 20 ms: the heap, what
"near one tensor" is about), next to the float32 size of the largest tensor.

    python benchmarks/quantize.py --quick            # ~20M parameters (smoke run)
    python benchmarks/quantize.py                    # ~110M parameters
    python benchmarks/quantize.py --size 700m        # ~730M parameters (writes ~1.5 GB)
    python benchmarks/quantize.py --size 2b          # the 2B-4T shape (writes ~4.8 GB)
    python benchmarks/quantize.py --types tq2_0 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: name -> (layers, d_model, d_ff, heads, kv_heads, vocab)
SIZES = {
    "20m": (4, 512, 1536, 8, 8, 8192),
    "110m": (12, 768, 2048, 12, 12, 32000),
    "700m": (24, 1536, 4096, 16, 16, 32000),
    "2b": (30, 2560, 6912, 20, 5, 128256),  # microsoft/bitnet-b1.58-2B-4T's shape (4.8 GB BF16)
}


# -- the synthetic checkpoint ------------------------------------------------------------------


def _shapes(layers: int, d: int, ff: int, kv: int, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, d)), ("model.norm.weight", (d,))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (d,)), (p + "post_attention_layernorm.weight", (d,)),
            (p + "self_attn.q_proj.weight", (d, d)), (p + "self_attn.k_proj.weight", (kv, d)),
            (p + "self_attn.v_proj.weight", (kv, d)), (p + "self_attn.o_proj.weight", (d, d)),
            (p + "self_attn.attn_sub_norm.weight", (d,)), (p + "mlp.gate_proj.weight", (ff, d)),
            (p + "mlp.up_proj.weight", (ff, d)), (p + "mlp.down_proj.weight", (d, ff)),
            (p + "mlp.ffn_sub_norm.weight", (ff,)),
        ]
    return out


def _write_bf16_safetensors(path: Path, shapes: list[tuple[str, tuple[int, ...]]], seed: int) -> None:
    """A BF16 safetensors file written tensor by tensor (numpy cannot hold bfloat16)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in shapes:
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for _name, shape in shapes:
            if len(shape) == 1:
                values = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
            else:
                values = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            f.write((values.view(np.uint32) >> 16).astype("<u2").tobytes())


def _tokenizer(folder: Path) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from bitnet_sdk.quantization.sources.hf_tokenizer import LLAMA3_HF_REGEX

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_HF_REGEX), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["BitNet b1.58 ternary weights: -1, 0 and +1; the quick brown fox."] * 8, trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": specials[0], "eos_token": specials[1]}))


def build_checkpoint(folder: Path, size: str, seed: int = 0) -> dict[str, Any]:
    layers, d, ff, heads, kv_heads, vocab = SIZES[size]
    folder.mkdir(parents=True, exist_ok=True)
    shapes = _shapes(layers, d, ff, d // heads * kv_heads, vocab)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "num_hidden_layers": layers,
        "hidden_size": d, "intermediate_size": ff, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "relu2",
        "tie_word_embeddings": True, "vocab_size": vocab,
    }))
    half = len(shapes) // 2  # two shards with an index, as real checkpoints
    files = {"model-00001-of-00002.safetensors": shapes[:half], "model-00002-of-00002.safetensors": shapes[half:]}
    for i, (fname, part) in enumerate(files.items()):
        _write_bf16_safetensors(folder / fname, part, seed + i)
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {name: fname for fname, part in files.items() for name, _ in part}}))
    _tokenizer(folder)
    params = sum(int(np.prod(s)) for _, s in shapes)
    return {"params": params, "bf16_bytes": 2 * params, "largest_f32_bytes": 4 * max(int(np.prod(s)) for _, s in shapes)}


# -- one measured run (in a child process) -----------------------------------------------------


class _AnonPeak:
    """Peak ``RssAnon`` of this process, sampled in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    @staticmethod
    def _read(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._read("RssAnon"))
            time.sleep(interval)

    def __enter__(self) -> _AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read("RssAnon"))


def _child(kind: str, folder: Path, out: Path) -> dict[str, Any]:
    import logging

    logging.disable(logging.INFO)
    from bitnet_sdk.backends import get
    from bitnet_sdk.quantization.pipeline import quantize
    from bitnet_sdk.quantization.sources.safetensors_io import ShardedSafetensors

    backend = get("numpy")  # imports and plugin discovery stay out of the timed region
    base_anon = _AnonPeak._read("RssAnon")
    shards = sorted(folder.glob("*.safetensors"))
    with _AnonPeak() as anon:
        t0 = time.perf_counter()
        extra: dict[str, Any] = {}
        if kind == "copy":
            for i, p in enumerate(shards):
                shutil.copyfile(p, out.with_suffix(f".{i}"))
        elif kind == "read":
            buf = bytearray(16 << 20)
            for p in shards:
                with open(p, "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
        elif kind == "read_f32":
            store = ShardedSafetensors(shards)
            checksum = 0.0
            for name in store:
                checksum += float(store.float32(name).ravel()[0])
            extra["checksum"] = checksum
        else:
            if kind.endswith("-numpy"):
                os.environ["BITNET_QUANT_NATIVE"] = "off"
            qtype = kind.removesuffix("-numpy")
            if qtype.endswith("-ref"):
                report = _reference_run(folder, out, qtype.removesuffix("-ref"))
            else:
                report = quantize(folder, out, qtype, backend=backend)
            extra = {"out_bytes": report.quantized_bytes, "ratio": report.compression_ratio,
                     "stages": report.stages, "mean_rel_err": report.summary()["mean_relative_error"]}
        seconds = time.perf_counter() - t0
    if "out_bytes" in extra:  # outside the timed region: fast and reference outputs must match
        import hashlib

        with open(out, "rb") as f:
            extra["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
    return {"kind": kind, "seconds": seconds, "peak_rss": _AnonPeak._read("VmHWM"),
            "peak_anon": anon.peak, "base_anon": base_anon, **extra}


def _reference_run(folder: Path, out: Path, qtype: str) -> Any:
    """The same run with the fast path off: every tensor through the reference path."""
    from bitnet_sdk.quantization.calibration import Calibration
    from bitnet_sdk.quantization.llm import LLMOptions, quantize_llm
    from bitnet_sdk.quantization.progress import Progress
    from bitnet_sdk.quantization.recipe import Recipe
    from bitnet_sdk.quantization.report import QuantizationReport
    from bitnet_sdk.quantization.sources.hf import HFSource

    report = QuantizationReport(str(folder), str(out), "hf", "llm", qtype, "gguf", "")
    opts = LLMOptions(qtype, Recipe.build(None, None, "f16"), Calibration(None, 0), (), 512, None, fast=False)
    with HFSource(folder) as source:
        report.original_bytes = source.original_bytes
        return quantize_llm(source, out, opts, Progress(None), report)


def _run_child(kind: str, folder: Path, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, str(folder), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver ------------------------------------------------------------------------------------

_BASELINES = ("read", "copy", "read_f32")


def _table(rows: list[dict[str, Any]], meta: dict[str, Any], markdown: bool) -> str:
    mb = meta["bf16_bytes"] / 1e6
    base = {r["kind"]: mb / r["seconds"] for r in rows if r["kind"] in _BASELINES}
    head = ["run", "s", "MB/s", "× read", "× copy", "× read f32", "peak RSS MB", "peak anon MB", "out MB", "ratio"]
    lines = []
    for r in rows:
        tput = mb / r["seconds"]
        lines.append([
            r["kind"] if r["kind"] in _BASELINES else f"quantize {r['kind']}".replace("-ref", " (reference path)")
            .replace("-numpy", " (numpy passes)"),
            f"{r['seconds']:.2f}", f"{tput:.1f}", f"{tput / base['read']:.3f}", f"{tput / base['copy']:.3f}",
            f"{tput / base['read_f32']:.3f}",
            f"{r['peak_rss'] / 1e6:.0f}", f"{(r['peak_anon'] - r['base_anon']) / 1e6:.0f}",
            f"{r['out_bytes'] / 1e6:.1f}" if "out_bytes" in r else "-", f"{r['ratio']:.2f}" if "ratio" in r else "-",
        ])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*row) for row in lines)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="110m", help="checkpoint size (default: 110m)")
    p.add_argument("--quick", action="store_true", help="the 20m checkpoint (a smoke run)")
    p.add_argument("--types", default="tq2_0,i2_s,tq1_0", help="comma-separated targets")
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary one, removed)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--reference", action="store_true",
                   help="also run each type with the fast path off (the reference path), interleaved")
    p.add_argument("--numpy", action="store_true",
                   help="also run each type without the native kernels (numpy passes), interleaved")
    p.add_argument("--child", nargs=3, metavar=("KIND", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, folder, out = args.child
        print(json.dumps(_child(kind, Path(folder), Path(out))))
        return 0
    if args.quick:
        args.size = "20m"
    work = Path(tempfile.mkdtemp(prefix="bitnet-qbench-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        meta = build_checkpoint(work / "ckpt", args.size)
        print(f"# {args.size}: {meta['params'] / 1e6:.0f}M parameters, {meta['bf16_bytes'] / 1e6:.0f} MB BF16 "
              f"(largest tensor {meta['largest_f32_bytes'] / 1e6:.0f} MB as float32), built in "
              f"{time.perf_counter() - t0:.1f} s; cpus={os.cpu_count()}", flush=True)
        rows = []
        types = args.types.split(",")
        variants = ["", *(["-numpy"] if args.numpy else []), *(["-ref"] if args.reference else [])]
        for kind in [*_BASELINES, *(t + v for t in types for v in variants)]:
            rows.append(_run_child(kind, work / "ckpt", work / f"out-{kind}.gguf"))
            for f in work.glob("out-*"):
                f.unlink()
        print(_table(rows, meta, args.markdown))
        for t in types:
            same = {r.get("sha256") for r in rows if r["kind"] in (t, f"{t}-ref", f"{t}-numpy")}
            if len(variants) > 1:
                print(f"# {t}: outputs of {', '.join(t + v for v in variants)} are "
                      f"{'byte-identical' if len(same) == 1 else 'DIFFERENT'}")
        for r in rows:
            if "stages" in r:
                stages = ", ".join(f"{k} {v:.2f} s" for k, v in r["stages"].items())
                print(f"# {r['kind']}: {stages}; mean relative error {r['mean_rel_err']:.4f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
