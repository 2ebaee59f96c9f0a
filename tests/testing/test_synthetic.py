"""The synthetic-model builder: valid, deterministic BitNet GGUF files."""

from __future__ import annotations

import hashlib

import pytest
from gguf import GGUFReader, TokenType

from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.testing.synthetic import LLAMA3_CHAT_TEMPLATE, build_model, corrupt, tiny_bpe_vocab


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_arguments_same_bytes(tmp_path) -> None:
    a = build_model(tmp_path / "a.gguf", n_layers=1, seed=7)
    b = build_model(tmp_path / "b.gguf", n_layers=1, seed=7)
    c = build_model(tmp_path / "c.gguf", n_layers=1, seed=8)
    assert _digest(a) == _digest(b) != _digest(c)


def test_skipping_a_tensor_leaves_the_others_unchanged(tmp_path) -> None:
    full = read_model(build_model(tmp_path / "full.gguf", n_layers=1, qtype="f32"))
    part = read_model(build_model(tmp_path / "part.gguf", n_layers=1, qtype="f32", skip_tensors={"blk.0.attn_q.weight"}))
    assert "blk.0.attn_q.weight" not in part
    assert (part.tensor("blk.0.ffn_up.weight").q == full.tensor("blk.0.ffn_up.weight").q).all()


def test_vocabulary_is_byte_level_bpe_with_llama3_specials() -> None:
    v = tiny_bpe_vocab()
    assert len(v.tokens) == 512 == len(v.token_types)
    assert len(set(v.tokens)) == len(v.tokens)
    assert v.tokens[v.bos_id] == "<|begin_of_text|>" and v.tokens[v.eos_id] == "<|end_of_text|>"
    assert v.tokens[v.eot_id] == "<|eot_id|>"
    assert v.token_types[v.bos_id] == TokenType.CONTROL and v.token_types[0] == TokenType.NORMAL
    known = set(v.tokens)
    for merge in v.merges:  # every merge is two known tokens whose join is a token
        left, right = merge.split(" ")
        assert left in known and right in known and left + right in known
    assert "Ġthe" in known  # learned from the corpus: " the"


def test_vocabulary_size_is_exact() -> None:
    assert len(tiny_bpe_vocab(300).tokens) == 300
    big = tiny_bpe_vocab(4096)  # more than the corpus supports: padded with reserved specials
    assert len(big.tokens) == 4096 and big.tokens[-1].startswith("<|reserved_special_token_")
    with pytest.raises(ValueError, match="at least"):
        tiny_bpe_vocab(100)


def test_tokenizer_keys_and_chat_template(tmp_path) -> None:
    p = build_model(tmp_path / "chat.gguf", n_layers=1, chat_template=LLAMA3_CHAT_TEMPLATE)
    md = read_model(p).metadata
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "llama-bpe"
    assert md["tokenizer.chat_template"] == LLAMA3_CHAT_TEMPLATE
    assert md["tokenizer.ggml.add_bos_token"] is True
    assert len(md["tokenizer.ggml.tokens"]) == 512
    assert "tokenizer.chat_template" not in read_model(build_model(tmp_path / "plain.gguf", n_layers=1)).metadata


def test_files_are_plain_gguf(tmp_path) -> None:
    """gguf-py itself reads what we write (for the formats it knows)."""
    reader = GGUFReader(build_model(tmp_path / "m.gguf", n_layers=1, qtype="tq1_0"))
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "blk.0.attn_sub_norm.weight", "blk.0.ffn_sub_norm.weight"} <= names
    assert len(names) == 2 + 4 + 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"qtype": "q4_0"}, "qtype"),
        ({"arch": "llama"}, "arch"),
        ({"d_model": 128}, "multiples of 256"),
        ({"qtype": "i2_s", "d_ff": 320}, "multiples of 128"),
        ({"n_kv_heads": 3}, "n_kv_heads"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(tmp_path / "x.gguf", **kwargs)
    assert not (tmp_path / "x.gguf").exists()


def test_corrupt_helper(tmp_path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)))
    assert corrupt(src, tmp_path / "t", truncate_to=10).read_bytes() == bytes(range(10))
    assert corrupt(src, tmp_path / "a", append=b"xy").read_bytes()[-2:] == b"xy"
    flipped = corrupt(src, tmp_path / "f", flip_bits=1, flip_range=(5, 6)).read_bytes()
    diff = [i for i in range(256) if flipped[i] != i]
    assert diff == [5] and bin(flipped[5] ^ 5).count("1") == 1


@pytest.mark.parametrize("qtype", ["tq2_0", "tq1_0", "f16"])
def test_llama_cpp_loads_and_runs_the_files(tmp_path, qtype: str) -> None:
    """llama.cpp accepts what we write for its `bitnet` architecture (I2_S is bitnet.cpp-only)."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is a dev dependency for parity tests")
    p = build_model(tmp_path / "m.gguf", qtype=qtype, n_layers=1, chat_template=LLAMA3_CHAT_TEMPLATE)
    llm = llama_cpp.Llama(model_path=str(p), n_ctx=32, n_threads=1, verbose=False)
    assert llm.n_vocab() == 512 and llm.n_embd() == 256
    llm.eval(llm.tokenize(b"Hello world"))
    assert llm.scores[llm.n_tokens - 1].shape == (512,)
