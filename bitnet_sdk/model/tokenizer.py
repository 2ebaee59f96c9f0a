"""Tokenizer built from a GGUF vocabulary, tokenizing as llama.cpp does.

Placeholder: the Tokenizer class lands in the next commit; the constants below
are shared with the synthetic-model builder.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["GPT2_REGEX", "LLAMA3_REGEX", "bytes_to_unicode"]

#: llama.cpp's LLaMA-3 pre-tokenizer regex (``LLAMA_VOCAB_PRE_TYPE_LLAMA3``):
#: the tokenizer.json one with ``(?i:...)`` spelled out, as llama.cpp does.
LLAMA3_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: GPT-2's regex (``LLAMA_VOCAB_PRE_TYPE_GPT2``).
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character map used by byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping
