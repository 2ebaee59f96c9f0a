"""Language models through the whole pipeline: each source to each target, loaded and run,
with the report's numbers checked against computations made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType

import bitnet_sdk
from bitnet_sdk.model.config import ModelConfig
from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.model.reference import reference_forward
from bitnet_sdk.quantization.errors import QuantizationError
from bitnet_sdk.quantization.pipeline import quantize
from bitnet_sdk.ternary import TernaryTensor, dequantize, ternary_linear
from bitnet_sdk.testing.synthetic import build_model

QTYPES = ("tq2_0", "tq1_0", "i2_s")
PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
HF_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TYPE_IDS = {"tq2_0": 35, "tq1_0": 34, "i2_s": 36}


def _nll(logits: np.ndarray, ids: list[int]) -> float:
    z = logits[:-1].astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-sum(logp[i, ids[i + 1]] for i in range(len(ids) - 1)))


@pytest.mark.parametrize("qtype", QTYPES)
def test_hf_checkpoint_to_each_target(tmp_path: Path, hf_checkpoint: tuple[Path, dict], qtype: str) -> None:
    folder, weights = hf_checkpoint
    rng = np.random.default_rng(7)
    x_user = rng.standard_normal((5, 256)).astype(np.float32)
    out = tmp_path / f"m.{qtype}.gguf"
    report = quantize(folder, out, qtype, backend="numpy", calibration={"blk.1.attn_q.weight": x_user})

    mf = read_model(out)
    assert report.arch == mf.arch == ("bitnet-b1.58" if qtype == "i2_s" else "bitnet")  # relu2 model
    assert mf.metadata[f"{mf.arch}.hidden_activation"] == "relu2"
    assert report.quantized_bytes == out.stat().st_size
    assert report.original_bytes == (folder / "model.safetensors").stat().st_size
    assert report.compression_ratio == pytest.approx(report.original_bytes / out.stat().st_size)
    assert report.memory_reduction == pytest.approx(1 - out.stat().st_size / report.original_bytes)
    assert report.parameters == sum(w.size for w in weights.values())
    assert (report.tensors_quantized, report.tensors_kept) == (14, 10)
    assert report.bits_per_weight == pytest.approx(8 * sum(i.n_bytes for i in mf.tensors.values()) / report.parameters)

    by_name = {layer.name: layer for layer in report.layers}
    for i in range(2):
        for proj in PROJECTIONS:
            name = f"blk.{i}.{proj}.weight"
            info = mf.tensor_info(name)
            assert info.ggml_type == TYPE_IDS[qtype]
            w = weights[f"model.layers.{i}.{HF_NAMES[proj]}.weight"]
            t = mf.tensor(name)
            s = np.mean(np.abs(w), dtype=np.float64)
            np.testing.assert_array_equal(t.q, np.clip(np.round(w / np.float32(s)), -1, 1))  # absmean codes
            expected_scale = np.float32(s) if qtype == "i2_s" else np.float16(np.float32(s))
            np.testing.assert_allclose(t.scale, np.float32(expected_scale), rtol=1e-6)
            err = np.linalg.norm(w.astype(np.float64) - dequantize(t)) / np.linalg.norm(w.astype(np.float64))
            assert by_name[name].relative_error == pytest.approx(err, rel=1e-9)
            assert by_name[name].output_type == qtype.upper()
    # user-supplied calibration rows for one layer: cosine of ternary vs float outputs
    t = mf.tensor("blk.1.attn_q.weight")
    w = weights["model.layers.1.self_attn.q_proj.weight"].astype(np.float64)
    y_q, y_f = ternary_linear(t, x_user).astype(np.float64), x_user.astype(np.float64) @ w.T
    cos = (y_q * y_f).sum(1) / np.linalg.norm(y_q, axis=1) / np.linalg.norm(y_f, axis=1)
    assert by_name["blk.1.attn_q.weight"].output_cosine == pytest.approx(cos.mean(), rel=1e-5)
    assert by_name["blk.1.attn_q.weight"].output_cosine_min == pytest.approx(cos.min(), rel=1e-5)
    # the file loads in the SDK and runs
    model = bitnet_sdk.load(out, backend="numpy")
    logits = model.forward(model.tokenize("The quick brown fox"))
    assert logits.shape[1] == 320 and np.all(np.isfinite(logits))


def test_sharded_checkpoint_gives_the_same_file(tmp_path: Path, hf_checkpoint: tuple[Path, dict], hf_sharded: Path) -> None:
    quantize(hf_checkpoint[0], tmp_path / "a.gguf", "tq2_0", backend="numpy")
    quantize(hf_sharded, tmp_path / "b.gguf", "tq2_0", backend="numpy")
    a, b = read_model(tmp_path / "a.gguf"), read_model(tmp_path / "b.gguf")
    assert list(a.tensors) == list(b.tensors)
    for name in a.tensors:
        np.testing.assert_array_equal(a.raw(name), b.raw(name))


def test_perplexity_is_measured(tmp_path: Path, hf_checkpoint: tuple[Path, dict]) -> None:
    src = tmp_path / "src.tq2_0.gguf"
    quantize(hf_checkpoint[0], src, "tq2_0", backend="numpy")
    texts = ["The quick brown fox jumps over the lazy dog.", "Hello world! How are you today?"]
    report = quantize(src, tmp_path / "m.tq1_0.gguf", "tq1_0", backend="numpy", text=texts, max_tokens=12)
    model = bitnet_sdk.load(tmp_path / "m.tq1_0.gguf", backend="numpy")
    ref_mf = read_model(src)
    nll_q = nll_src = 0.0
    n = 0
    for text in texts:
        ids = model.tokenize(text)[:12]
        nll_q += _nll(model.forward(ids), ids)
        nll_src += _nll(reference_forward(ref_mf, ModelConfig.from_model_file(ref_mf), ids, activations="none"), ids)
        n += len(ids) - 1
    c = report.calibration
    assert c is not None and c["tokens"] == n == 22
    assert c["quantized_perplexity"] == pytest.approx(np.exp(nll_q / n), rel=1e-6)
    assert c["source_perplexity"] == pytest.approx(np.exp(nll_src / n), rel=1e-6)


def test_ternary_valued_f32_gguf_converts_exactly(tmp_path: Path) -> None:
    src = build_model(tmp_path / "f32.gguf", qtype="f32", seed=4)
    ref = build_model(tmp_path / "tq2.gguf", qtype="tq2_0", seed=4)
    report = quantize(src, tmp_path / "out.gguf", "tq2_0", backend="numpy")
    assert all(layer.lossless for layer in report.layers)
    out, expected = read_model(tmp_path / "out.gguf"), read_model(ref)
    for name in expected.tensors:
        if expected.is_projection(name):
            np.testing.assert_array_equal(out.raw(name), expected.raw(name))


def test_float_gguf_is_quantized_with_absmean(tmp_path: Path) -> None:
    path = build_model(tmp_path / "f32.gguf", qtype="f32", seed=5)
    mf = read_model(path)
    rng = np.random.default_rng(5)
    floats = {}
    with open(path, "r+b") as f:  # replace every projection by non-ternary floats, in place
        for name, info in mf.tensors.items():
            if mf.is_projection(name):
                floats[name] = rng.standard_normal(info.shape).astype(np.float32)
                f.seek(info.offset)
                f.write(floats[name].tobytes())
    report = quantize(path, tmp_path / "out.gguf", "tq2_0", backend="numpy")
    assert not any(layer.lossless for layer in report.layers)
    out = read_model(tmp_path / "out.gguf")
    for name, w in floats.items():
        s = np.mean(np.abs(w), dtype=np.float64)
        np.testing.assert_array_equal(out.tensor(name).q, np.clip(np.round(w / np.float32(s)), -1, 1))


def test_ternary_types_convert_losslessly_both_ways(tmp_path: Path) -> None:
    i2s = build_model(tmp_path / "a.i2_s.gguf", qtype="i2_s", arch="bitnet-b1.58", seed=6)
    r1 = quantize(i2s, tmp_path / "b.tq2_0.gguf", "tq2_0", backend="numpy")
    r2 = quantize(tmp_path / "b.tq2_0.gguf", tmp_path / "c.tq1_0.gguf", "tq1_0", backend="numpy")
    r3 = quantize(tmp_path / "c.tq1_0.gguf", tmp_path / "d.i2_s.gguf", "i2_s", backend="numpy")
    assert all(layer.lossless for r in (r1, r2, r3) for layer in r.layers)
    a, b, d = read_model(i2s), read_model(tmp_path / "b.tq2_0.gguf"), read_model(tmp_path / "d.i2_s.gguf")
    # bitnet.cpp -> llama.cpp: architecture and keys renamed, activation made explicit
    assert (a.arch, b.arch, d.arch) == ("bitnet-b1.58", "bitnet", "bitnet-b1.58")
    assert not [k for k in b.metadata if k.startswith("bitnet-b1.58.")]
    assert b.metadata["bitnet.block_count"] == a.metadata["bitnet-b1.58.block_count"]
    assert b.metadata["bitnet.hidden_activation"] == "relu2"
    assert b.metadata["tokenizer.ggml.tokens"] == a.metadata["tokenizer.ggml.tokens"]
    for name in a.tensors:
        np.testing.assert_array_equal(d.raw(name), a.raw(name))  # I2_S -> TQ2_0 -> TQ1_0 -> I2_S
        if a.is_projection(name):
            ta, tb = a.tensor(name), b.tensor(name)
            np.testing.assert_array_equal(dequantize(ta), dequantize(tb))
    ids = [1, 5, 9, 200, 3]
    la = bitnet_sdk.load(i2s, backend="numpy").forward(ids)
    lb = bitnet_sdk.load(tmp_path / "b.tq2_0.gguf", backend="numpy").forward(ids)
    np.testing.assert_array_equal(la, lb)


def test_fp16_unrepresentable_i2s_scale_goes_to_a_scale_tensor(tmp_path: Path) -> None:
    src = build_model(tmp_path / "a.gguf", qtype="i2_s", seed=8)  # float32 scales, not fp16-exact
    quantize(src, tmp_path / "b.gguf", "tq2_0", backend="numpy")
    a, b = read_model(src), read_model(tmp_path / "b.gguf")
    name = "blk.0.attn_q.weight"
    assert float(np.float16(a.tensor(name).scale[0])) != float(a.tensor(name).scale[0])
    assert b.tensor_info("blk.0.attn_q.scale").ggml_type == GGMLQuantizationType.F32
    np.testing.assert_array_equal(b.tensor(name).scale, a.tensor(name).scale)


@pytest.mark.parametrize(("hp", "type_name"), [("f32", "F32"), ("bf16", "BF16"), ("q8_0", "Q8_0"), (None, "F16")])
def test_high_precision_type_of_kept_tensors(tmp_path: Path, hf_checkpoint: tuple[Path, dict], hp: str | None, type_name: str) -> None:
    folder, weights = hf_checkpoint
    quantize(folder, tmp_path / "m.gguf", "tq2_0", backend="numpy", high_precision_type=hp)
    mf = read_model(tmp_path / "m.gguf")
    assert mf.tensor_info("token_embd.weight").type_name == type_name
    assert mf.tensor_info("blk.0.attn_norm.weight").type_name == "F32"  # vectors always F32
    emb = weights["model.embed_tokens.weight"]
    tol = {"F32": 0, "F16": 1e-3, "BF16": 1e-2, "Q8_0": 1e-2}[type_name]
    np.testing.assert_allclose(mf.tensor("token_embd.weight"), emb, atol=tol * np.abs(emb).max())


def test_projections_cannot_be_kept_in_float(tmp_path: Path, hf_checkpoint: tuple[Path, dict]) -> None:
    with pytest.raises(QuantizationError, match=r"pattern 'blk\.0\.\*' matches the projection blk\.0\.attn_q"):
        quantize(hf_checkpoint[0], tmp_path / "m.gguf", "tq2_0", keep_high_precision=["blk.0.*"], backend="numpy")
    assert not list(tmp_path.iterdir())


def test_arch_override_and_explicit_activation(tmp_path: Path, hf_checkpoint: tuple[Path, dict]) -> None:
    report = quantize(hf_checkpoint[0], tmp_path / "m.gguf", "i2_s", arch="bitnet", backend="numpy")
    mf = read_model(tmp_path / "m.gguf")
    assert report.arch == mf.arch == "bitnet"
    assert mf.metadata["bitnet.hidden_activation"] == "relu2"  # llama.cpp's bitnet defaults to SiLU
    assert ModelConfig.from_model_file(mf).hidden_act == "relu2"


def test_bad_arguments(tmp_path: Path, hf_checkpoint: tuple[Path, dict]) -> None:
    folder = hf_checkpoint[0]
    with pytest.raises(QuantizationError, match=r"unsupported packed ternary format 'q4_0'"):
        quantize(folder, tmp_path / "m.gguf", "q4_0")
    with pytest.raises(QuantizationError, match=r"unsupported output format 'safetensors'"):
        quantize(folder, tmp_path / "m.gguf", format="safetensors")
    with pytest.raises(FileNotFoundError):
        quantize(tmp_path / "missing", tmp_path / "m.gguf")
    with pytest.raises(FileNotFoundError, match=r"destination folder does not exist"):
        quantize(folder, tmp_path / "no" / "such" / "m.gguf", backend="numpy")
    assert not list(tmp_path.iterdir())


def test_public_quantize_function(tmp_path: Path, hf_checkpoint: tuple[Path, dict]) -> None:
    import bitnet_sdk.quantization as package  # importing the package must not shadow the function

    report = bitnet_sdk.quantize(hf_checkpoint[0], tmp_path / "m.gguf", "tq1_0", backend="numpy")
    assert isinstance(report, package.QuantizationReport)
    assert report.to_dict()["qtype"] == "tq1_0"
    assert isinstance(read_model(tmp_path / "m.gguf").tensor("blk.0.ffn_up.weight"), TernaryTensor)


def test_float_file_with_scale_tensors_stays_exact(tmp_path: Path) -> None:
    from bitnet_sdk.testing.parity import build_conditioned_model

    src = build_conditioned_model(tmp_path / "f32.gguf", qtype="f32", seed=13)  # ±1 floats + .scale
    report = quantize(src, tmp_path / "tq1.gguf", "tq1_0", backend="numpy", high_precision_type="f32")
    assert all(layer.lossless for layer in report.layers)
    a, b = read_model(src), read_model(tmp_path / "tq1.gguf")
    assert b.tensor_info("blk.1.ffn_down.scale").n_elements == 1
    for name in a.tensors:
        if a.is_projection(name):
            np.testing.assert_array_equal(dequantize(b.tensor(name)), dequantize(a.tensor(name)))
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    np.testing.assert_array_equal(
        bitnet_sdk.load(src, backend="numpy").forward(ids), bitnet_sdk.load(tmp_path / "tq1.gguf", backend="numpy").forward(ids)
    )
