"""A Hugging Face ``tokenizer.json`` as a GGUF vocabulary (``tokenizer.ggml.*`` keys).

Two kinds of BPE tokenizer are converted, as llama.cpp's ``convert_hf_to_gguf.py`` does:

* byte-level BPE (GPT-2 / LLaMA-3 / BitNet b1.58 2B-4T): ``tokenizer.ggml.model = "gpt2"``,
  tokens in id order, merges, and ``tokenizer.ggml.pre`` naming the pre-tokenizer llama.cpp must
  apply. llama.cpp's converter recognises the pre-tokenizer by hashing the tokenization of a test
  text with ``transformers``; we read it from the ``pre_tokenizer`` section instead: LLaMA-3's
  split regex → ``llama-bpe``, plain GPT-2 byte-level → ``gpt-2``. Anything else is refused,
  since a wrong pre-tokenizer silently changes every tokenization.
* SentencePiece-style BPE with byte fallback (LLaMA-2, 1bitLLM/bitnet_b1_58-*):
  ``tokenizer.ggml.model = "llama"``, ``<0xXX>`` byte tokens, and scores ``-id`` (SentencePiece
  numbers pieces by decreasing score, and llama.cpp merges by score).

Ids the tokenizer does not use up to the embedding's row count become ``[PAD<i>]`` user-defined
tokens (as the converter does). Added tokens are control tokens when special, else user-defined.
Merges, special token ids, ``add_bos``/``add_eos`` and the chat template come from
``gguf.SpecialVocab`` (the ``gguf`` package's reader of ``tokenizer_config.json``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFWriter, SpecialVocab, TokenType

from bitnet_sdk.model.tokenizer import GPT2_REGEX, LLAMA3_REGEX
from bitnet_sdk.quantization.errors import UnsupportedSourceError

__all__ = ["LLAMA3_HF_REGEX", "HFVocab", "read_vocab", "write_vocab"]

#: LLaMA-3's split regex as ``tokenizer.json`` spells it (llama.cpp spells out ``(?i:...)``).
LLAMA3_HF_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_BY_REGEX = {LLAMA3_HF_REGEX: "llama-bpe", LLAMA3_REGEX: "llama-bpe", GPT2_REGEX: "gpt-2"}
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_SPM_SPACE = "\u2581"


@dataclass(frozen=True)
class HFVocab:
    """A converted vocabulary; ``special`` carries merges, ids, flags and chat template."""

    model: str  # "gpt2" | "llama"
    pre: str | None
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None
    add_space_prefix: bool | None
    special: SpecialVocab


def _pre_tokenizer(tj: dict[str, Any]) -> str:
    pt = tj.get("pre_tokenizer") or {}
    items = pt.get("pretokenizers", []) if pt.get("type") == "Sequence" else [pt]
    regexes = [(i.get("pattern") or {}).get("Regex") for i in items if i.get("type") == "Split"]
    byte_level = [i for i in items if i.get("type") == "ByteLevel"]
    if len(regexes) == 1 and regexes[0] in _PRE_BY_REGEX and byte_level:
        return _PRE_BY_REGEX[regexes[0]]
    if not regexes and len(byte_level) == 1 and byte_level[0].get("use_regex", True):
        return "gpt-2"
    raise UnsupportedSourceError(
        f"tokenizer.json pre-tokenizer {json.dumps(pt)[:300]} is not one llama.cpp implements "
        f"(LLaMA-3 'llama-bpe' or GPT-2 byte-level); converting it would change tokenization"
    )


def _looks_special(token: str) -> bool:
    return (token.startswith("<|") and token.endswith("|>")) or token in ("<s>", "</s>", "<unk>", "<pad>")


def _space_prefix(tj: dict[str, Any], config: dict[str, Any]) -> bool:
    if isinstance(config.get("add_prefix_space"), bool):
        return bool(config["add_prefix_space"])
    text = json.dumps([tj.get("normalizer"), tj.get("pre_tokenizer")], ensure_ascii=False)
    if '"Prepend"' in text and _SPM_SPACE in text:
        return True
    return '"Metaspace"' in text and '"never"' not in text and '"add_prefix_space": false' not in text


def read_vocab(folder: Path, n_vocab: int) -> HFVocab:
    """Convert ``folder/tokenizer.json`` for a model whose embedding has ``n_vocab`` rows."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        hint = " (a SentencePiece tokenizer.model alone is not read)" if (folder / "tokenizer.model").is_file() else ""
        raise UnsupportedSourceError(f"{folder} has no tokenizer.json{hint}; the GGUF file needs the vocabulary")
    tj = json.loads(path.read_text(encoding="utf-8"))
    model = tj.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise UnsupportedSourceError(f"{path}: only BPE tokenizers are supported, got {model.get('type')!r}")
    spm = bool(model.get("byte_fallback"))
    vocab: dict[str, int] = dict(model["vocab"])
    added = {int(a["id"]): a for a in tj.get("added_tokens") or []}
    by_id: dict[int, str] = {i: t for t, i in vocab.items()}
    by_id.update({i: str(a["content"]) for i, a in added.items()})
    if by_id and max(by_id) >= n_vocab:
        raise UnsupportedSourceError(
            f"the tokenizer has token id {max(by_id)} but the embedding has only {n_vocab} rows"
        )
    tokens: list[str] = []
    types: list[int] = []
    scores: list[float] = []
    for i in range(n_vocab):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(int(TokenType.USER_DEFINED))
        elif i in added:
            special = bool(added[i].get("special")) or _looks_special(text)
            tokens.append(text)
            types.append(int(TokenType.CONTROL if special else TokenType.USER_DEFINED))
        elif spm and _BYTE_TOKEN.fullmatch(text):
            tokens.append(text)
            types.append(int(TokenType.BYTE))
        else:
            tokens.append(text)
            types.append(int(TokenType.NORMAL))
        scores.append(-float(i) if types[-1] == int(TokenType.NORMAL) else 0.0)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    special_vocab = SpecialVocab(folder, load_merges=not spm, n_vocab=n_vocab)
    if spm:
        unk = vocab.get("<unk>")
        if unk is not None and unk < n_vocab:
            types[unk] = int(TokenType.UNKNOWN)
            special_vocab.special_token_ids.setdefault("unk", unk)
        return HFVocab("llama", None, tokens, types, scores, _space_prefix(tj, config), special_vocab)
    if not special_vocab.merges:
        raise UnsupportedSourceError(f"{path}: a byte-level BPE tokenizer needs merges")
    return HFVocab("gpt2", _pre_tokenizer(tj), tokens, types, None, None, special_vocab)


def write_vocab(gw: GGUFWriter, vocab: HFVocab) -> None:
    """Write the ``tokenizer.ggml.*`` keys (and chat template) of ``vocab``."""
    gw.add_tokenizer_model(vocab.model)
    if vocab.pre is not None:
        gw.add_tokenizer_pre(vocab.pre)
    gw.add_token_list(vocab.tokens)
    gw.add_token_types(vocab.token_types)
    if vocab.scores is not None:
        gw.add_token_scores(vocab.scores)
    if vocab.add_space_prefix is not None:
        gw.add_add_space_prefix(vocab.add_space_prefix)
    vocab.special.add_to_gguf(gw, quiet=True)
