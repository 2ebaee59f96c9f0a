"""Small, valid BitNet b1.58 GGUF files for tests, demos and benchmarks.

``build_model(path, ...)`` writes a complete model with ``gguf.GGUFWriter``:
random-normal weights quantized with BitNet's absmean rule
(``bitnet_sdk.ternary.quantize_weights``), stored in the requested format,
plus a small byte-level BPE vocabulary that llama.cpp loads with the
``llama-bpe`` (LLaMA-3) pre-tokenizer. Same arguments, same bytes.

Formats and their constraints (checked up front, with a clear message):

* ``tq2_0`` / ``tq1_0``: llama.cpp's ternary blocks of 256 weights along a row,
  so ``d_model`` and ``d_ff`` must be multiples of 256 (the defaults are).
  The per-tensor scale is rounded to float16 first, so the file holds it exactly.
  Packing is :mod:`bitnet_sdk.formats`' (checked against gguf-py and bitnet.cpp there).
* ``i2_s``: bitnet.cpp's format, type id 36, 128-weight blocks and one float32
  scale per tensor. Pair it with ``arch="bitnet-b1.58"`` or ``"bitnet-25"`` for
  bitnet.cpp; upstream llama.cpp cannot load I2_S at all.
* ``f32`` / ``f16``: ternary values times the scale, as ``convert_hf_to_gguf.py``
  writes the original BitNet checkpoints.

The vocabulary is learned deterministically by a tiny byte-pair learner over a
built-in corpus (not ``tokenizers``' trainer) so that token ids, and thus every
golden output built on these files, cannot change with a library upgrade.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter, LlamaFileType, TokenType
from gguf.quants import quantize as gguf_quantize
from tokenizers import Regex
from tokenizers.pre_tokenizers import Split

from bitnet_sdk import formats
from bitnet_sdk.formats.constants import (
    BITNET_ARCHITECTURES,
    FTYPE_MOSTLY_I2_S,
    I2_S_BLOCK_SIZE,
    I2_S_TYPE_ID,
)
from bitnet_sdk.model.config import HIDDEN_ACT_KEY
from bitnet_sdk.model.tokenizer import LLAMA3_REGEX, bytes_to_unicode
from bitnet_sdk.ternary import TernaryTensor, quantize_weights

__all__ = [
    "LLAMA3_CHAT_TEMPLATE",
    "QTYPES",
    "SyntheticVocab",
    "build_model",
    "corrupt",
    "tiny_bpe_vocab",
    "tiny_spm_vocab",
]

QTYPES = ("tq2_0", "tq1_0", "i2_s", "f32", "f16")
_TQ = {"tq2_0": GGMLQuantizationType.TQ2_0, "tq1_0": GGMLQuantizationType.TQ1_0}
_FILE_TYPE = {
    "f32": LlamaFileType.ALL_F32,
    "f16": LlamaFileType.MOSTLY_F16,
    "tq1_0": LlamaFileType.MOSTLY_TQ1_0,
    "tq2_0": LlamaFileType.MOSTLY_TQ2_0,
    "i2_s": FTYPE_MOSTLY_I2_S,  # bitnet.cpp's number
}

#: A LLaMA-3 style chat template using the synthetic vocabulary's special tokens.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>",
)
TINY_VOCAB_SIZE = 512

_CORPUS = """\
BitNet b1.58 is a large language model whose weights are ternary: every weight is -1, 0 or +1.
The model stores one scale for each weight matrix, and the activations are quantized to 8 bits per token.
Because the weights are ternary, a matrix multiplication needs only additions and subtractions.
This makes inference fast on ordinary CPUs, and the model files are small: about 1.58 bits per weight.
The quick brown fox jumps over the lazy dog. The lazy dog sleeps in the sun, and the fox runs away.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 25 42 100 128 256 1024 2048 4096 65536 3.14159 2.71828 1,000,000.
Code: def main(argv): return 0 if argv else 1  # x = y + z; print("hello, world!") {a: [1, 2, 3]}
Questions? Answers! Quotes "like this" and 'like that'. It's, we're, they've, I'm, you'll, he'd.
Unicode: café, naïve, façade, Ærø, straße, Привет мир, Γειά σου κόσμε, 日本語のテキスト, 中文, 한국어, 🙂🚀.
Whitespace:  two spaces,   three spaces,	a tab, and new lines.

Hello! How are you today? I am fine, thank you. What is the capital of France? Paris is the capital.
A model reads a prompt, predicts the next token, appends it, and repeats until it reaches the end.
The tokenizer splits text into pieces, and each piece becomes a token with a number in the vocabulary.
"""


@dataclass(frozen=True)
class SyntheticVocab:
    """A vocabulary: byte-level BPE (``model="gpt2"``, GPT-2 byte alphabet, merges) or
    SentencePiece style (``model="llama"``, ``▁`` for spaces, scores, ``<0xXX>`` byte tokens)."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int
    eos_id: int
    eot_id: int | None
    model: str = "gpt2"
    scores: list[float] | None = None


def _learn_merges(corpus: str, n_tokens: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Greedy byte-pair learning: most frequent pair first, ties by the pair's text."""
    byte_char = bytes_to_unicode()
    tokens = [byte_char[b] for b in range(256)]
    known = set(tokens)
    pieces = Split(Regex(LLAMA3_REGEX), "isolated").pre_tokenize_str(corpus)
    words: Counter[tuple[str, ...]] = Counter(
        tuple(byte_char[b] for b in piece.encode("utf-8")) for piece, _ in pieces
    )
    merges: list[tuple[str, str]] = []
    while len(tokens) < n_tokens:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = best[0] + best[1]
        if merged not in known:
            known.add(merged)
            tokens.append(merged)
        words = Counter({_merge_word(w, best, merged): c for w, c in words.items()})
    return tokens, merges


def _merge_word(word: tuple[str, ...], pair: tuple[str, str], merged: str) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


@lru_cache(maxsize=8)
def tiny_bpe_vocab(size: int = TINY_VOCAB_SIZE) -> SyntheticVocab:
    """The synthetic vocabulary: 256 bytes, learned merges, then LLaMA-3 specials.

    ``size`` counts every token; when the corpus runs out of pairs the gap is
    filled with more ``<|reserved_special_token_N|>`` control tokens.
    """
    if size < 256 + len(_SPECIALS):
        raise ValueError(f"vocabulary size must be at least {256 + len(_SPECIALS)}, got {size}")
    tokens, merges = _learn_merges(_CORPUS, size - len(_SPECIALS))
    specials = list(_SPECIALS)
    specials += [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + size - len(tokens) - len(specials))]
    n_normal = len(tokens)
    tokens = tokens + specials
    types = [int(TokenType.NORMAL)] * n_normal + [int(TokenType.CONTROL)] * len(specials)
    return SyntheticVocab(
        tokens=tokens,
        token_types=types,
        merges=[f"{a} {b}" for a, b in merges],
        bos_id=n_normal,
        eos_id=n_normal + 1,
        eot_id=n_normal + 4,
    )


@lru_cache(maxsize=1)
def tiny_spm_vocab() -> SyntheticVocab:
    """A SentencePiece-style (``llama``) vocabulary from the same learned merges.

    ``<unk>``, ``<s>``, ``</s>``, the 256 ``<0xXX>`` byte tokens, every character
    of the corpus, then each learned merge that is whole UTF-8 text, with
    spaces as ``▁``, scored so earlier merges win (as SentencePiece BPE does).
    """
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)] + [int(TokenType.BYTE)] * 256
    scores = [0.0] * len(tokens)
    seen = set(tokens)
    chars = sorted({c for c in _CORPUS.replace(" ", "\u2581") if c.isprintable()})
    bpe_tokens, _merges = _learn_merges(_CORPUS, TINY_VOCAB_SIZE)
    pieces: list[str] = []
    for tok in bpe_tokens[256:]:
        try:
            text = bytes(byte_of[c] for c in tok).decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.isprintable():
            pieces.append(text.replace(" ", "\u2581"))
    for rank, piece in enumerate([*pieces, *chars]):
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(int(TokenType.NORMAL))
            scores.append(-float(rank))
    return SyntheticVocab(tokens=tokens, token_types=types, merges=[], bos_id=1, eos_id=2, eot_id=None, model="llama", scores=scores)


def _check_args(qtype: str, arch: str, d_model: int, n_heads: int, n_kv_heads: int, d_ff: int) -> None:
    if qtype not in QTYPES:
        raise ValueError(f"qtype must be one of {QTYPES}, got {qtype!r}")
    if arch not in BITNET_ARCHITECTURES:
        raise ValueError(f"arch must be one of {BITNET_ARCHITECTURES}, got {arch!r}")
    if d_model % n_heads or n_heads % n_kv_heads:
        raise ValueError(f"need d_model % n_heads == 0 and n_heads % n_kv_heads == 0 ({d_model}, {n_heads}, {n_kv_heads})")
    if (d_model // n_heads) % 2:
        raise ValueError(f"head size {d_model // n_heads} must be even for RoPE")
    if qtype in _TQ and (d_model % 256 or d_ff % 256):
        raise ValueError(f"{qtype} packs 256 weights per block: d_model ({d_model}) and d_ff ({d_ff}) must be multiples of 256")
    if qtype == "i2_s" and (d_model % I2_S_BLOCK_SIZE or d_ff % I2_S_BLOCK_SIZE):
        raise ValueError(f"i2_s packs {I2_S_BLOCK_SIZE} weights per block: d_model and d_ff must be multiples of {I2_S_BLOCK_SIZE}")


def _add_projection(writer: GGUFWriter, name: str, w: np.ndarray, qtype: str, scale_tensor: bool) -> None:
    """Absmean-quantize ``w`` and add it to the file in ``qtype``."""
    t = quantize_weights(w)
    q, s = t.q, float(t.scale[0])
    if qtype != "i2_s":
        s = float(np.float16(s))  # TQ block scales and F16 values are float16: keep them exact
    if scale_tensor:
        writer.add_tensor(name.replace(".weight", ".scale"), np.array([s], dtype=np.float32))
        s = 1.0
    if qtype in ("i2_s", *_TQ):
        packed = formats.pack(qtype, TernaryTensor.from_scalar(q, s))
        if qtype == "i2_s":
            # gguf-py has no I2_S: hand over the bytes as int8 so add_tensor keeps raw_shape as is
            writer.add_tensor(name, packed.view(np.int8), raw_shape=q.shape, raw_dtype=I2_S_TYPE_ID)  # type: ignore[arg-type]
        else:
            writer.add_tensor(name, packed.reshape(q.shape[0], -1), raw_dtype=_TQ[qtype])
        return
    values = q.astype(np.float32) * np.float32(s)
    writer.add_tensor(name, values.astype(np.float16 if qtype == "f16" else np.float32))


def _write_tokenizer(writer: GGUFWriter, vocab: SyntheticVocab, chat_template: str | None) -> None:
    writer.add_tokenizer_model(vocab.model)
    if vocab.model == "gpt2":
        writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    if vocab.eot_id is not None:
        writer.add_eot_token_id(vocab.eot_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)


def build_model(
    path: str | os.PathLike[str],
    *,
    n_layers: int = 2,
    d_model: int = 256,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_ff: int = 512,
    vocab: str | int = "tiny-bpe",
    qtype: str = "tq2_0",
    arch: str = "bitnet",
    seed: int = 0,
    hidden_act: str | None = None,
    tie_embeddings: bool = True,
    context_length: int = 512,
    chat_template: str | None = None,
    rope_theta: float = 500000.0,
    rms_eps: float = 1e-5,
    scale_tensors: bool = False,
    metadata_overrides: Mapping[str, Any] | None = None,
    skip_tensors: Collection[str] = (),
    embedding_type: str | None = None,
) -> Path:
    """Write a small valid BitNet GGUF model to ``path`` and return the path.

    ``embedding_type`` stores the embedding (and an untied head): ``"f16"`` (the default),
    ``"bf16"`` or ``"f32"`` (the default for ``qtype="f32"``).

    ``vocab`` is ``"tiny-bpe"`` (512 tokens), a vocabulary size (byte-level
    BPE of that many tokens) or ``"tiny-spm"`` (a SentencePiece-style
    ``llama`` vocabulary). ``hidden_act``
    (``"relu2"``/``"silu"``) is written as ``<arch>.hidden_activation`` when
    given; absent, readers use the architecture's default (SiLU for llama.cpp's
    ``bitnet``, squared ReLU for bitnet.cpp's). ``scale_tensors`` stores the
    ternary values unscaled plus one-element ``*.scale`` tensors (llama.cpp's
    optional ``wq_s`` ...). ``tie_embeddings=False`` adds ``output.weight``.

    Test hooks: ``metadata_overrides`` replaces keys (value ``None`` removes
    the key; ``(value, GGUFValueType)`` sets an explicit type) and
    ``skip_tensors`` leaves tensors out, to build files that are wrong in one
    precise way.
    """
    _check_args(qtype, arch, d_model, n_heads, n_kv_heads, d_ff)
    if vocab == "tiny-spm":
        voc = tiny_spm_vocab()
    else:
        voc = tiny_bpe_vocab() if vocab == "tiny-bpe" else tiny_bpe_vocab(int(vocab))
    head_dim = d_model // n_heads
    rng = np.random.default_rng(seed)
    path = Path(path)
    writer = GGUFWriter(path, arch)
    writer.add_name(f"synthetic-{arch}-{qtype}")
    if qtype in _FILE_TYPE:
        writer.add_file_type(int(_FILE_TYPE[qtype]))
    writer.add_quantization_version(2)
    writer.add_vocab_size(len(voc.tokens))
    writer.add_context_length(context_length)
    writer.add_embedding_length(d_model)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(d_ff)
    writer.add_head_count(n_heads)
    writer.add_head_count_kv(n_kv_heads)
    writer.add_layer_norm_rms_eps(rms_eps)
    writer.add_rope_freq_base(rope_theta)
    writer.add_rope_dimension_count(head_dim)
    if hidden_act is not None:
        writer.add_string(HIDDEN_ACT_KEY.format(arch=arch), hidden_act)
    _write_tokenizer(writer, voc, chat_template)
    for key, value in (metadata_overrides or {}).items():
        writer.kv_data[0].pop(key, None)
        if value is not None:
            val, vtype = value if isinstance(value, tuple) else (value, GGUFValueType.get_type(value))
            writer.add_key_value(key, val, vtype)

    embedding_type = embedding_type or ("f32" if qtype == "f32" else "f16")
    if embedding_type not in ("f16", "bf16", "f32"):
        raise ValueError(f"embedding_type must be f16, bf16 or f32, got {embedding_type!r}")
    tensors: list[tuple[str, Any]] = [("token_embd.weight", ("float", (len(voc.tokens), d_model)))]
    tensors.append(("output_norm.weight", ("norm", (d_model,))))
    if not tie_embeddings:
        tensors.append(("output.weight", ("float", (len(voc.tokens), d_model))))
    shapes = {
        "attn_q": (n_heads * head_dim, d_model), "attn_k": (n_kv_heads * head_dim, d_model),
        "attn_v": (n_kv_heads * head_dim, d_model), "attn_output": (d_model, n_heads * head_dim),
        "ffn_gate": (d_ff, d_model), "ffn_up": (d_ff, d_model), "ffn_down": (d_model, d_ff),
    }
    for i in range(n_layers):
        tensors.append((f"blk.{i}.attn_norm.weight", ("norm", (d_model,))))
        tensors.append((f"blk.{i}.attn_sub_norm.weight", ("norm", (n_heads * head_dim,))))
        tensors.append((f"blk.{i}.ffn_norm.weight", ("norm", (d_model,))))
        tensors.append((f"blk.{i}.ffn_sub_norm.weight", ("norm", (d_ff,))))
        tensors += [(f"blk.{i}.{p}.weight", ("ternary", shape)) for p, shape in shapes.items()]

    for name, (kind, shape) in tensors:
        # draw every tensor's numbers even when skipped, so the others do not change
        values = rng.standard_normal(shape).astype(np.float32)
        if name in skip_tensors:
            continue
        if kind == "norm":
            writer.add_tensor(name, (1.0 + 0.1 * values).astype(np.float32))
        elif kind == "float" and embedding_type == "bf16":
            bits = gguf_quantize(values, GGMLQuantizationType.BF16)  # rounded to nearest even
            writer.add_tensor(name, bits, raw_dtype=GGMLQuantizationType.BF16)
        elif kind == "float":
            writer.add_tensor(name, values.astype(np.float32 if embedding_type == "f32" else np.float16))
        else:
            _add_projection(writer, name, values, qtype, scale_tensors)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def corrupt(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    truncate_to: int | None = None,
    flip_bits: int = 0,
    flip_range: tuple[int, int] | None = None,
    append: bytes = b"",
    seed: int = 0,
) -> Path:
    """Copy ``src`` to ``dst`` damaged on purpose (for validation tests and fuzzing).

    ``truncate_to`` keeps that many bytes; ``flip_bits`` flips that many random
    bits (within ``flip_range`` = [start, end) bytes when given, seeded);
    ``append`` adds trailing bytes.
    """
    data = bytearray(Path(src).read_bytes())
    if truncate_to is not None:
        del data[truncate_to:]
    if flip_bits and data:
        rng = np.random.default_rng(seed)
        lo, hi = flip_range if flip_range else (0, len(data))
        hi = min(hi, len(data))
        for pos, bit in zip(rng.integers(lo, hi, flip_bits), rng.integers(0, 8, flip_bits)):  # noqa: B905
            data[int(pos)] ^= 1 << int(bit)
    data += append
    out = Path(dst)
    out.write_bytes(bytes(data))
    return out
