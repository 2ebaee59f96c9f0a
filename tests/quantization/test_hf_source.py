"""Hugging Face checkpoints: tensor mapping, packed weights, refusals and the vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import TokenType
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers

from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.model.tokenizer import Tokenizer
from bitnet_sdk.quantization.errors import UnsupportedSourceError
from bitnet_sdk.quantization.pipeline import quantize
from bitnet_sdk.quantization.sources.hf import HFSource
from bitnet_sdk.ternary import TernaryTensor
from tests.quantization._support import (
    SPECIALS,
    build_hf_checkpoint,
    hf_config,
    hf_tensors,
    pack_hf,
)

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Numbers 12345 and 6789; weights -1, 0 or +1!",
    "  leading spaces\tand\ttabs\nnew lines  ",
    "unicode: café naïve 日本 🙂",
]


def test_both_naming_styles_map_to_the_same_gguf_tensors(tmp_path: Path) -> None:
    build_hf_checkpoint(tmp_path / "a")
    build_hf_checkpoint(tmp_path / "b", llama_names=True)
    with HFSource(tmp_path / "a") as a, HFSource(tmp_path / "b") as b:
        names_a = [(t.name, t.shape, t.projection) for t in a.tensors]
        names_b = [(t.name, t.shape, t.projection) for t in b.tensors]
        assert names_a == names_b
        assert sum(t.projection for t in a.tensors) == 7 * 2
        src = {t.name: t.source_name for t in b.tensors}
        assert src["blk.1.attn_sub_norm.weight"] == "model.layers.1.self_attn.inner_attn_ln.weight"
        assert src["blk.0.ffn_sub_norm.weight"] == "model.layers.0.mlp.ffn_layernorm.weight"


def test_tensors_are_read_unchanged(tmp_path: Path) -> None:
    weights = build_hf_checkpoint(tmp_path / "m", shards=3)
    with HFSource(tmp_path / "m") as src:
        np.testing.assert_array_equal(src.read("blk.1.ffn_down.weight"), weights["model.layers.1.mlp.down_proj.weight"])
        np.testing.assert_array_equal(src.read("token_embd.weight"), weights["model.embed_tokens.weight"])


@pytest.mark.parametrize("linear_class", ["autobitlinear", "bitlinear"])
def test_packed_checkpoints_convert_exactly(tmp_path: Path, linear_class: str) -> None:
    cfg = hf_config()
    weights = hf_tensors(cfg, seed=3)
    expected: dict[str, tuple[np.ndarray, float]] = {}
    for name in [n for n in weights if n.endswith("_proj.weight")]:
        packed, s = pack_hf(weights[name])
        weights[name] = packed
        stored = s if linear_class == "autobitlinear" else 1.0 / s  # transformers multiplies / divides
        weights[name.removesuffix(".weight") + ".weight_scale"] = np.array([stored], dtype=np.float32)
        q = np.clip(np.round(hf_tensors(cfg, seed=3)[name] / s), -1, 1).astype(np.int8)
        expected[name] = (q, s)
    build_hf_checkpoint(tmp_path / "m", tensors=weights,
                        quantization_config={"quant_method": "bitnet", "linear_class": linear_class})
    report = quantize(tmp_path / "m", tmp_path / "out.gguf", "tq2_0", backend="numpy")
    assert all(layer.relative_error == 0.0 and layer.lossless for layer in report.layers)
    mf = read_model(tmp_path / "out.gguf")
    t = mf.tensor("blk.0.ffn_up.weight")
    q, s = expected["model.layers.0.mlp.up_proj.weight"]
    assert isinstance(t, TernaryTensor)
    np.testing.assert_array_equal(t.q, q)
    np.testing.assert_allclose(t.scale, np.float32(1.0 / np.float32(1.0 / s)) if linear_class == "bitlinear" else s, rtol=1e-7)
    assert "blk.0.ffn_up.scale" in mf.tensors  # the float32 scale kept exactly beside the TQ2_0 codes


def test_llama_without_sub_norms_is_refused_with_the_reason(tmp_path: Path) -> None:
    cfg = hf_config(architectures=["LlamaForCausalLM"], model_type="llama")
    weights = {k: v for k, v in hf_tensors(cfg).items() if "sub_norm" not in k}
    build_hf_checkpoint(tmp_path / "m", tensors=weights, architectures=["LlamaForCausalLM"])
    with pytest.raises(UnsupportedSourceError, match=r"sub-norms.*bitnet architecture") as exc:
        HFSource(tmp_path / "m")
    assert "blk.0.attn_sub_norm.weight" in str(exc.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"extra": "model.layers.0.mlp.mystery.weight"}, r"not part of a BitNet model"),
        ({"shape": "model.layers.1.self_attn.k_proj.weight"}, r"expected \[128, 256\] from config.json"),
        ({"config": {"hidden_act": "gelu"}}, r"hidden_act 'gelu'"),
        ({"config": {"rope_scaling": {"type": "yarn", "factor": 4.0}}}, r"rope_scaling"),
        ({"config": {"architectures": ["GPT2LMHeadModel"]}}, r"not a BitNet/LLaMA"),
    ],
)
def test_refusals_name_the_problem(tmp_path: Path, edit: dict, message: str) -> None:
    cfg = hf_config()
    weights = hf_tensors(cfg)
    if "extra" in edit:
        weights[edit["extra"]] = np.zeros((4, 4), np.float32)
    if "shape" in edit:
        weights[edit["shape"]] = np.zeros((64, 256), np.float32)
    build_hf_checkpoint(tmp_path / "m", tensors=weights, **edit.get("config", {}))
    with pytest.raises(UnsupportedSourceError, match=message):
        HFSource(tmp_path / "m")


def test_untied_head_is_written_as_output(tmp_path: Path) -> None:
    cfg = hf_config(tie_word_embeddings=False)
    weights = hf_tensors(cfg)
    weights["lm_head.weight"] = np.random.default_rng(5).standard_normal((320, 256)).astype(np.float32)
    build_hf_checkpoint(tmp_path / "m", tensors=weights, tie_word_embeddings=False)
    quantize(tmp_path / "m", tmp_path / "o.gguf", "tq1_0", backend="numpy", high_precision_type="f32")
    mf = read_model(tmp_path / "o.gguf")
    np.testing.assert_array_equal(mf.tensor("output.weight"), weights["lm_head.weight"])


# -- vocabulary -----------------------------------------------------------------------------


def test_byte_level_vocabulary_tokenizes_like_the_hf_tokenizer(tmp_path: Path) -> None:
    build_hf_checkpoint(tmp_path / "m", vocab_size=320)
    quantize(tmp_path / "m", tmp_path / "o.gguf", "tq2_0", backend="numpy")
    mf = read_model(tmp_path / "o.gguf")
    md = mf.metadata
    hf = HFTokenizer.from_file(str(tmp_path / "m" / "tokenizer.json"))
    assert md["tokenizer.ggml.model"] == "gpt2"
    assert md["tokenizer.ggml.pre"] == "llama-bpe"
    tokens, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    assert len(tokens) == 320 == mf.tensor_info("token_embd.weight").shape[0]
    n_hf = hf.get_vocab_size()
    assert tokens[n_hf:] == [f"[PAD{i}]" for i in range(n_hf, 320)]
    for special in SPECIALS:
        assert types[hf.token_to_id(special)] == TokenType.CONTROL
    assert md["tokenizer.ggml.bos_token_id"] == hf.token_to_id(SPECIALS[0])
    assert md["tokenizer.ggml.eos_token_id"] == hf.token_to_id(SPECIALS[1])
    ours = Tokenizer.from_gguf(mf)
    for text in TEXTS:
        assert ours.encode(text) == hf.encode(text).ids, text  # both add <|begin_of_text|>
        assert ours.decode(ours.encode(text)) == text


def test_sentencepiece_style_vocabulary(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    build_hf_checkpoint(folder)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for piece in ["\u2581", "t", "h", "e", "\u2581t", "he", "\u2581the", "a", "\u2581a"]:
        vocab.setdefault(piece, len(vocab))
    merges = [("\u2581", "t"), ("h", "e"), ("\u2581t", "he"), ("\u2581", "a")]
    tok = HFTokenizer(models.BPE(vocab, merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<s>", "</s>"])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}))
    quantize(folder, tmp_path / "o.gguf", "tq2_0", backend="numpy")
    mf = read_model(tmp_path / "o.gguf")
    md = mf.metadata
    assert md["tokenizer.ggml.model"] == "llama"
    assert md["tokenizer.ggml.add_space_prefix"] is True
    types = md["tokenizer.ggml.token_type"]
    assert types[0] == TokenType.UNKNOWN and types[1] == TokenType.CONTROL
    assert all(types[3 + b] == TokenType.BYTE for b in range(256))
    scores = md["tokenizer.ggml.scores"]
    assert scores[vocab["\u2581the"]] < scores[vocab["\u2581t"]]  # later pieces score lower
    ours = Tokenizer.from_gguf(mf)
    assert ours.encode("the a", add_bos=False) == [vocab["\u2581the"], vocab["\u2581a"]]
    assert ours.decode(ours.encode("the a")) == "the a"


def test_unknown_pre_tokenizer_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    build_hf_checkpoint(folder)
    tj = json.loads((folder / "tokenizer.json").read_text())
    tj["pre_tokenizer"] = json.loads(pre_tokenizers.Whitespace().__getstate__())
    (folder / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(UnsupportedSourceError, match=r"pre-tokenizer"):
        HFSource(folder)


def test_missing_tokenizer_json_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    build_hf_checkpoint(folder)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.model").write_bytes(b"spm")
    with pytest.raises(UnsupportedSourceError, match=r"no tokenizer.json \(a SentencePiece tokenizer.model alone"):
        HFSource(folder)
