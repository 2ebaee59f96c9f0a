"""The GGUF reader: tensors, metadata and configuration of BitNet model files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

from bitnet_sdk.model.config import ConfigError, ModelConfig
from bitnet_sdk.model.gguf_file import (
    GGML_TYPE_I2_S,
    GGUFFormatError,
    NotTernaryError,
    read_model,
    ternarize_rows,
)
from bitnet_sdk.ternary import TernaryTensor
from bitnet_sdk.testing.synthetic import build_model, corrupt

QTYPES = ("tq2_0", "tq1_0", "i2_s", "f32", "f16")
PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("gguf")
    out = {}
    for q in QTYPES:
        arch = "bitnet-b1.58" if q == "i2_s" else "bitnet"
        out[q] = build_model(d / f"m_{q}.gguf", qtype=q, arch=arch, seed=3)
    return out


def test_every_format_decodes_to_the_same_ternary_weights(files: dict) -> None:
    """Five independent encodings of the same seeded weights must agree exactly."""
    mfs = {q: read_model(p) for q, p in files.items()}
    for layer in range(2):
        for proj in PROJECTIONS:
            name = f"blk.{layer}.{proj}.weight"
            ref = mfs["f32"].tensor(name)
            assert isinstance(ref, TernaryTensor)
            assert set(np.unique(ref.q)) <= {-1, 0, 1}
            assert np.unique(ref.scale).size == 1  # BitNet: one absmean scale per tensor
            for q, mf in mfs.items():
                t = mf.tensor(name)
                assert isinstance(t, TernaryTensor), (q, name)
                assert t.shape == ref.shape
                np.testing.assert_array_equal(t.q, ref.q, err_msg=f"{q} {name}")
                # I2_S keeps the float32 scale; the others hold it as float16
                rtol = 1e-3 if q == "i2_s" else 0
                np.testing.assert_allclose(t.scale, ref.scale, rtol=rtol, err_msg=f"{q} {name}")


def test_tensor_directory_and_types(files: dict) -> None:
    mf = read_model(files["tq2_0"])
    info = mf.tensor_info("blk.0.attn_k.weight")
    assert info.shape == (128, 256)  # (rows = 2 kv heads * 64, cols = d_model)
    assert info.ggml_type == GGMLQuantizationType.TQ2_0 and info.type_name == "TQ2_0"
    assert info.n_bytes == 128 * 256 // 256 * 66
    assert mf.raw("blk.0.attn_k.weight").size == info.n_bytes
    assert read_model(files["i2_s"]).tensor_info("blk.0.attn_k.weight").ggml_type == GGML_TYPE_I2_S
    assert read_model(files["i2_s"]).tensor_info("blk.0.attn_k.weight").n_bytes == 128 * 256 // 4 + 32
    with pytest.raises(KeyError, match="no tensor"):
        mf.tensor_info("blk.9.attn_q.weight")
    assert "output.weight" not in mf


def test_f32_tensors_are_views_of_the_file(files: dict) -> None:
    mf = read_model(files["f32"])
    emb = mf.tensor("token_embd.weight")
    assert emb.dtype == np.float32 and emb.shape == (512, 256)
    assert not emb.flags.owndata and not emb.flags.writeable
    norm = mf.tensor("blk.0.attn_norm.weight")
    assert norm.shape == (256,) and np.all(np.abs(norm - 1) < 1)


def test_f16_tensors_are_converted_once(files: dict) -> None:
    mf = read_model(files["f16"])
    emb = mf.tensor("token_embd.weight")
    assert emb.dtype == np.float32
    assert mf.tensor("token_embd.weight") is emb
    assert mf.tensor("blk.0.attn_q.weight") is mf.tensor("blk.0.attn_q.weight")
    # cache=False converts without keeping the result (the loader repacks and drops it)
    once = mf.tensor("blk.1.attn_q.weight", cache=False)
    assert mf.tensor("blk.1.attn_q.weight", cache=False) is not once


def test_config_from_metadata(files: dict) -> None:
    cfg = ModelConfig.from_model_file(read_model(files["tq2_0"]))
    assert (cfg.arch, cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads) == ("bitnet", 2, 256, 4, 2)
    assert (cfg.head_dim, cfg.d_ff, cfg.vocab_size, cfg.context_length) == (64, 512, 512, 512)
    assert cfg.rope_theta == 500000.0 and cfg.rope_neox and cfg.rope_style == "neox" and cfg.rope_dim == 64
    assert cfg.rms_eps == pytest.approx(1e-5)
    assert cfg.hidden_act == "silu"  # llama.cpp's default for `bitnet` without hidden_activation
    assert cfg.tie_embeddings
    assert (cfg.bos_id, cfg.eos_id) == (504, 505)
    # the bitnet.cpp architectures default to squared ReLU
    assert ModelConfig.from_model_file(read_model(files["i2_s"])).hidden_act == "relu2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_layers = 3  # type: ignore[misc]


def test_kv_cache_formula() -> None:
    cfg = ModelConfig(
        arch="bitnet", n_layers=30, d_model=2560, n_heads=20, n_kv_heads=5, head_dim=128, d_ff=6912,
        vocab_size=128256, context_length=4096, rope_theta=500000.0, rope_neox=True, rope_dim=128,
        rms_eps=1e-5, hidden_act="relu2", tie_embeddings=True,
    )
    # 2 (K, V) * 30 layers * 4096 positions * 5 heads * 128 dims * 4 bytes
    assert cfg.kv_cache_bytes() == 629_145_600
    assert cfg.kv_cache_bytes(n_ctx=1, bytes_per_value=2) == 2 * 30 * 640 * 2


def test_hidden_activation_key(tmp_path) -> None:
    relu = build_model(tmp_path / "relu.gguf", qtype="f16", hidden_act="relu2", n_layers=1)
    assert ModelConfig.from_model_file(read_model(relu)).hidden_act == "relu2"
    swish = build_model(tmp_path / "swish.gguf", qtype="f16", hidden_act="swish", n_layers=1)
    assert ModelConfig.from_model_file(read_model(swish)).hidden_act == "silu"
    gelu = build_model(tmp_path / "gelu.gguf", qtype="f16", hidden_act="gelu", n_layers=1)
    with pytest.raises(ConfigError, match="gelu"):
        _ = ModelConfig.from_model_file(read_model(gelu))


def test_untied_output_head(tmp_path) -> None:
    p = build_model(tmp_path / "untied.gguf", qtype="f32", tie_embeddings=False, n_layers=1)
    mf = read_model(p)
    assert not ModelConfig.from_model_file(mf).tie_embeddings
    out = mf.tensor("output.weight")
    assert out.shape == (512, 256) and not np.array_equal(out, mf.tensor("token_embd.weight"))


def test_scale_tensors_multiply_the_weights(tmp_path) -> None:
    plain = read_model(build_model(tmp_path / "a.gguf", qtype="tq2_0", n_layers=1, seed=5))
    scaled = read_model(build_model(tmp_path / "b.gguf", qtype="tq2_0", n_layers=1, seed=5, scale_tensors=True))
    assert "blk.0.ffn_up.scale" in scaled
    raw = scaled.ternary("blk.0.ffn_up.weight")
    np.testing.assert_array_equal(raw.q, plain.tensor("blk.0.ffn_up.weight").q)
    np.testing.assert_array_equal(raw.scale, plain.tensor("blk.0.ffn_up.weight").scale)
    # the packed blocks hold scale 1; the .scale tensor carries the absmean
    assert scaled.float_tensor("blk.0.ffn_up.scale").shape == (1,)


def test_config_errors_name_the_key(tmp_path) -> None:
    p = build_model(tmp_path / "nohead.gguf", n_layers=1, metadata_overrides={"bitnet.attention.head_count": None})
    with pytest.raises(ConfigError, match=r"bitnet\.attention\.head_count"):
        _ = ModelConfig.from_model_file(read_model(p))
    p = build_model(tmp_path / "kv.gguf", n_layers=1, metadata_overrides={"bitnet.attention.head_count_kv": 3})
    with pytest.raises(ConfigError, match="multiple of 3"):
        _ = ModelConfig.from_model_file(read_model(p))
    p = build_model(tmp_path / "arch.gguf", n_layers=1, metadata_overrides={"general.architecture": "llama"})
    with pytest.raises(ConfigError, match="llama"):
        _ = ModelConfig.from_model_file(read_model(p))


def _write_float_model(path, w: np.ndarray) -> None:
    writer = GGUFWriter(path, "bitnet")
    writer.add_tensor("blk.0.attn_q.weight", w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_float_projection_that_is_not_ternary_is_refused(tmp_path) -> None:
    w = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    _write_float_model(tmp_path / "float.gguf", w)
    mf = read_model(tmp_path / "float.gguf")
    with pytest.raises(NotTernaryError, match=r"blk\.0\.attn_q\.weight: row 0"):
        mf.tensor("blk.0.attn_q.weight")


def test_per_row_scales_survive(tmp_path) -> None:
    q = np.array([[1, 0, -1, 1], [0, -1, -1, 0], [0, 0, 0, 0]], dtype=np.int8)
    w = q.astype(np.float32) * np.array([[0.5], [2.0], [1.0]], dtype=np.float32)
    t = ternarize_rows(w, "x")
    np.testing.assert_array_equal(t.q, q)
    np.testing.assert_array_equal(t.scale, [0.5, 2.0, 0.0])
    with pytest.raises(NotTernaryError, match="row 1"):
        ternarize_rows(np.array([[1, 1], [1, 2]], dtype=np.float32), "x")
    with pytest.raises(NotTernaryError, match="row 0"):
        ternarize_rows(np.array([[np.nan, 1]], dtype=np.float32), "x")


def test_malformed_files_raise_format_errors(files: dict, tmp_path) -> None:
    src = files["tq1_0"]
    size = src.stat().st_size
    cases = {
        "truncated_header": corrupt(src, tmp_path / "a.gguf", truncate_to=100),
        "tensor_out_of_bounds": corrupt(src, tmp_path / "b.gguf", truncate_to=size - 1000),
        "trailing_data": corrupt(src, tmp_path / "c.gguf", append=b"\0" * 64),
        "bad_magic": corrupt(src, tmp_path / "d.gguf", flip_bits=1, flip_range=(0, 1)),
    }
    for code, path in cases.items():
        with pytest.raises(GGUFFormatError) as err:
            read_model(path)
        assert err.value.code == code, (code, err.value)
    # non-strict reading leaves layout problems to the caller
    assert read_model(cases["trailing_data"], strict=False).tensors
    with pytest.raises(FileNotFoundError):
        read_model(tmp_path / "missing.gguf")
    with pytest.raises(IsADirectoryError):
        read_model(tmp_path)


def test_metadata_arrays_read_in_place_equal_gguf_py(files: dict) -> None:
    from gguf import GGUFReader

    from bitnet_sdk.model.gguf_file import StringArray

    for path in (files["tq2_0"], build_model(files["tq2_0"].parent / "spm.gguf", vocab="tiny-spm", n_layers=1)):
        mf = read_model(path)
        reader = GGUFReader(path)
        for key, field in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            expected = field.contents()
            if field.types[0] == GGUFValueType.ARRAY and not isinstance(expected, list):
                expected = [expected]
            assert mf.metadata[key] == expected, key
        tokens = mf.metadata.array("tokenizer.ggml.tokens")
        assert isinstance(tokens, StringArray)  # not decoded until asked for
        assert list(tokens) == mf.metadata["tokenizer.ggml.tokens"]
        assert tokens[-1] == reader.fields["tokenizer.ggml.tokens"].contents(-1)
        assert tokens.byte_lengths().tolist() == [len(t.encode()) for t in tokens]
        types = mf.metadata.array("tokenizer.ggml.token_type")
        assert isinstance(types, np.ndarray) and types.tolist() == mf.metadata["tokenizer.ggml.token_type"]


def _replace_tokens(src, dst, new: list[bytes]):
    """Copy of ``src`` whose two consecutive 2-byte tokens are replaced by ``new`` (same sizes)."""
    import struct

    from bitnet_sdk.testing.synthetic import tiny_bpe_vocab

    tokens = tiny_bpe_vocab().tokens
    i = next(i for i in range(len(tokens) - 1) if len(tokens[i].encode()) == len(tokens[i + 1].encode()) == 2)
    old = b"".join(struct.pack("<Q", 2) + t.encode() for t in tokens[i : i + 2])
    data = src.read_bytes()
    assert data.count(old) == 1
    dst.write_bytes(data.replace(old, b"".join(struct.pack("<Q", len(b)) + b for b in new)))
    return dst


def test_strings_that_are_not_utf8_are_refused(files: dict, tmp_path) -> None:
    bad = _replace_tokens(files["tq2_0"], tmp_path / "bad.gguf", [b"\xff\xfe", b"ab"])
    # each string alone is invalid though their concatenation is "a" + "\u0101" + "b"
    split = _replace_tokens(files["tq2_0"], tmp_path / "split.gguf", [b"a\xc4", b"\x81b"])
    fine = _replace_tokens(files["tq2_0"], tmp_path / "fine.gguf", [b"ab", "é".encode()])
    for path in (bad, split):
        with pytest.raises(GGUFFormatError) as err:
            read_model(path)
        assert err.value.code == "bad_header" and "UTF-8" in str(err.value)
    assert read_model(fine).metadata.array("tokenizer.ggml.tokens")
