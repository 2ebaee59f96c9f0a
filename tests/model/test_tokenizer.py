"""Tokenizer from GGUF vocabularies: behaviour, and parity with llama.cpp.

The parity tests load the same small files in llama.cpp (``llama-cpp-python``,
``vocab_only``) and compare token ids and token pieces on hand-picked and
seeded random texts (unicode, whitespace runs, numbers, special tokens).
"""

from __future__ import annotations

import ctypes
import random
from pathlib import Path

import pytest
from gguf import GGUFValueType, TokenType

from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.model.tokenizer import Tokenizer, TokenizerError, TokenizerSpec
from bitnet_sdk.testing.synthetic import build_model, tiny_bpe_vocab

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  two  spaces,   three\n\n\nnew lines\ttab\r\nCRLF ",
    "café naïve straße Ærø Привет мир Γειά σου 日本語のテキスト 한국어 🙂🚀",
    "12345678 3.14159 1,000,000 0x1F -42",
    "it's I'm we'll they've HE'D 'quoted'",
    "<|eot_id|> and <|begin_of_text|> in text, </s> <s> <unk>",
    "",
    " ",
    "\n",
    "x" * 80,
    "def f(a, b):\n    return {a: [b]}  # comment",
    "\u00a0nbsp\u2009thin\u3000ideographic\u2028line",
    "e\u0301 combining, \x00 nul, \x1f unit sep",
]
CHAR_POOL = [
    *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789", " ", "  ", "\n", "\t", "\r\n", "'s", "'LL", ".", ",",
    "!", "?", "-", "(", "}", "é", "ß", "日", "🙂", "Привет", "κόσμε", "\u00a0", "\u3000", "<|eot_id|>",
    "<|begin_of_text|>", "</s>", "<s>", "<unk>", "\u0301", "١٢٣", "ǅ", "ⅷ", "\x00", "\x0b", "\u2028",
]


@pytest.fixture(scope="module")
def bpe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("tok") / "bpe.gguf", qtype="f16", n_layers=1)


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("tok") / "spm.gguf", qtype="f16", n_layers=1, vocab="tiny-spm")


# -- behaviour ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bpe", "spm"])
def test_round_trip(kind: str, bpe_path: Path, spm_path: Path) -> None:
    tok = Tokenizer.from_gguf(bpe_path if kind == "bpe" else spm_path)
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids[0] == tok.bos_id
        if kind == "bpe" or text.strip(" ") == text:  # SentencePiece adds one leading space, dropped after BOS
            assert tok.decode(ids) == text, text
        assert tok.encode(text, add_bos=False) == ids[1:]


def test_bpe_merges_apply(bpe_path: Path) -> None:
    tok = Tokenizer.from_gguf(bpe_path)
    ids = tok.encode(" the", add_bos=False)
    assert ids == [tok.token_to_id("Ġthe")]  # a learned merge, one token
    assert len(tok.encode("ǅǅǅ", add_bos=False)) == 6  # unseen: byte fallback, 2 bytes each
    assert tok.token_bytes(tok.token_to_id("Ġthe")) == b" the"


def test_special_tokens(bpe_path: Path) -> None:
    tok = Tokenizer.from_gguf(bpe_path)
    v = tiny_bpe_vocab()
    plain = tok.encode("<|eot_id|>", add_bos=False)
    assert len(plain) > 1 and v.eot_id not in plain
    assert tok.encode("a<|eot_id|>b", add_bos=False, parse_special=True) == [
        tok.token_to_id("a"), v.eot_id, tok.token_to_id("b")
    ]
    assert tok.eos_ids == {v.eos_id, v.eot_id} and tok.eog_ids == tok.eos_ids
    assert v.bos_id in tok.special_ids
    assert tok.decode([v.bos_id, tok.token_to_id("a"), v.eot_id]) == "a"
    assert tok.decode([v.bos_id, v.eot_id], special=True) == "<|begin_of_text|><|eot_id|>"
    with pytest.raises(IndexError):
        tok.token_bytes(10**6)


def test_user_defined_tokens_are_always_split(tmp_path: Path) -> None:
    v = tiny_bpe_vocab()
    types = list(v.token_types)
    types[v.eot_id] = int(TokenType.USER_DEFINED)
    p = build_model(tmp_path / "ud.gguf", n_layers=1, metadata_overrides={"tokenizer.ggml.token_type": (types, GGUFValueType.ARRAY)})
    tok = Tokenizer.from_gguf(p)
    assert v.eot_id in tok.encode("x<|eot_id|>", parse_special=False)


def test_flags_and_defaults(tmp_path: Path) -> None:
    p = build_model(tmp_path / "nobos.gguf", n_layers=1, metadata_overrides={"tokenizer.ggml.add_bos_token": False})
    assert Tokenizer.from_gguf(p).encode("hi")[0] != tiny_bpe_vocab().bos_id
    p = build_model(tmp_path / "eos.gguf", n_layers=1, metadata_overrides={"tokenizer.ggml.add_eos_token": True})
    ids = Tokenizer.from_gguf(p).encode("hi")
    assert ids[0] == tiny_bpe_vocab().bos_id and ids[-1] == tiny_bpe_vocab().eos_id
    # llama-bpe without an add_bos key: llama.cpp's default for LLaMA-3 vocabularies is to add BOS
    p = build_model(tmp_path / "nokey.gguf", n_layers=1, metadata_overrides={"tokenizer.ggml.add_bos_token": None})
    assert TokenizerSpec.from_metadata(read_model(p).metadata).add_bos is True


def test_spec_errors() -> None:
    md = dict(read_model_metadata_stub())
    assert TokenizerSpec.from_metadata(md).model == "gpt2"
    with pytest.raises(TokenizerError, match="pre-tokenizer"):
        TokenizerSpec.from_metadata({**md, "tokenizer.ggml.pre": "qwen9"})
    with pytest.raises(TokenizerError, match=r"needs tokenizer\.ggml\.merges"):
        TokenizerSpec.from_metadata({k: val for k, val in md.items() if k != "tokenizer.ggml.merges"})
    with pytest.raises(TokenizerError, match="no vocabulary"):
        TokenizerSpec.from_metadata({})


def read_model_metadata_stub() -> dict[str, object]:
    v = tiny_bpe_vocab(300)
    return {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe", "tokenizer.ggml.tokens": v.tokens,
        "tokenizer.ggml.token_type": v.token_types, "tokenizer.ggml.merges": v.merges,
        "tokenizer.ggml.bos_token_id": v.bos_id,
    }


@pytest.mark.parametrize("pre", ["default", "gpt-2"])
def test_other_pre_tokenizers_split_digits_differently(pre: str) -> None:
    tok = Tokenizer(TokenizerSpec.from_metadata({**read_model_metadata_stub(), "tokenizer.ggml.pre": pre}))
    llama3 = Tokenizer(TokenizerSpec.from_metadata(read_model_metadata_stub()))
    text = "Numbers 1234567 and words"
    assert tok.decode(tok.encode(text)) == text
    # LLaMA-3 groups digits by three; gpt-2 keeps a run of digits together (before merges)
    assert tok.encode(text) != llama3.encode(text)


# -- parity with llama.cpp ----------------------------------------------------------


@pytest.fixture(scope="module")
def llama_cpp():  # type: ignore[no-untyped-def]
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is a dev dependency for parity tests")


def _llama_pieces(llama_cpp, llm, ids: list[int], special: bool) -> bytes:  # type: ignore[no-untyped-def]
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    buf = ctypes.create_string_buffer(512)
    out = b""
    for t in ids:
        n = llama_cpp.llama_token_to_piece(vocab, t, buf, len(buf), 0, special)
        out += buf.raw[:n]
    return out


@pytest.mark.parametrize("kind", ["bpe", "spm"])
def test_parity_with_llama_cpp(kind: str, bpe_path: Path, spm_path: Path, llama_cpp) -> None:  # type: ignore[no-untyped-def]
    path = bpe_path if kind == "bpe" else spm_path
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    tok = Tokenizer.from_gguf(path)
    rng = random.Random(1)
    texts = TEXTS + ["".join(rng.choice(CHAR_POOL) for _ in range(rng.randint(1, 30))) for _ in range(300)]
    for i, text in enumerate(texts):
        add_bos = i % 3 != 0
        for special in (False, True):
            expected = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)
            assert tok.encode(text, add_bos=add_bos, parse_special=special) == expected, (text, special)
        for special in (False, True):
            assert tok.decode_bytes(expected, special=special) == _llama_pieces(llama_cpp, llm, expected, special) or (
                kind == "spm" and expected and expected[0] == tok.bos_id  # we drop SentencePiece's leading space after BOS
            ), text
        if kind == "spm":  # llama-cpp-python's detokenize drops a space after BOS, for every vocabulary
            assert tok.decode_bytes(expected) == llm.detokenize(expected), text
