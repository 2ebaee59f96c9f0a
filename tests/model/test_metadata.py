"""model_metadata() and `bitnet inspect`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gguf import GGUFValueType

from bitnet_sdk.cli.main import main
from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.model.metadata import model_metadata
from bitnet_sdk.testing.synthetic import build_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("md") / "m.gguf", qtype="tq2_0", hidden_act="relu2", context_length=1024)


def test_counts_and_quantization(model: Path) -> None:
    doc = model_metadata(model)
    d, ff, v, kv = 256, 512, 512, 128
    per_layer_ternary = d * d * 2 + kv * d * 2 + ff * d * 3  # q, o; k, v; gate, up, down
    per_layer_norms = d + d + d + ff
    assert doc["ternary_parameters"] == 2 * per_layer_ternary
    assert doc["parameters"] == 2 * (per_layer_ternary + per_layer_norms) + v * d + d
    q = doc["quantization"]
    assert q["file_type"] == "MOSTLY_TQ2_0" and q["ternary_types"] == ["TQ2_0"]
    assert q["ternary_bits_per_weight"] == pytest.approx(66 * 8 / 256)
    assert q["tensor_types"]["TQ2_0"]["tensors"] == 14
    assert q["tensor_types"]["F16"]["bits_per_weight"] == 16.0
    assert doc["file_size"] == model.stat().st_size
    assert doc["architecture"] == "bitnet" and doc["gguf_version"] == 3 and doc["errors"] == []


def test_model_tokenizer_and_memory(model: Path) -> None:
    doc = model_metadata(read_model(model))  # a ModelFile works as well as a path
    m = doc["model"]
    assert (m["layers"], m["heads"], m["kv_heads"], m["head_dim"], m["context_length"]) == (2, 4, 2, 64, 1024)
    assert m["hidden_act"] == "relu2" and m["rope_style"] == "neox" and m["vocab_size"] == 512
    assert doc["tokenizer"]["model"] == "gpt2" and doc["tokenizer"]["pre"] == "llama-bpe"
    mem = doc["memory"]
    tensor_bytes = sum(t.n_bytes for t in read_model(model).tensors.values())
    assert mem["weights_bytes"] == tensor_bytes
    assert mem["kv_cache_bytes"] == 2 * 2 * 1024 * 2 * 64 * 4
    assert mem["total_bytes"] == tensor_bytes + mem["kv_cache_bytes"]
    assert "kv_cache = 2 * n_layers * context_length" in mem["formula"]
    json.dumps(doc)


def test_incomplete_metadata_is_described_not_raised(tmp_path: Path) -> None:
    p = build_model(tmp_path / "bad.gguf", n_layers=1, metadata_overrides={"bitnet.attention.head_count": (3, GGUFValueType.UINT32)})
    doc = model_metadata(p)
    assert doc["model"] is None and doc["memory"]["kv_cache_bytes"] is None
    assert any("3 heads" in e for e in doc["errors"])


def test_inspect_cli(model: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["inspect", str(model)]) == 0
    out = capsys.readouterr().out
    assert "bitnet" in out and "TQ2_0" in out and "4 query / 2 key-value" in out and "1,024 tokens" in out
    assert main(["inspect", "--json", str(model)]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["layers"] == 2
    assert main(["inspect", str(tmp_path / "missing.gguf")]) == 1
    assert "error:" in capsys.readouterr().out
    (tmp_path / "junk.gguf").write_bytes(b"not a model at all, just text")
    assert main(["inspect", "--json", str(tmp_path / "junk.gguf")]) == 1
    assert "not a GGUF file" in json.loads(capsys.readouterr().out)["errors"][0]


def test_bitnet_cpp_file_type(tmp_path: Path) -> None:
    p = build_model(tmp_path / "i2s.gguf", qtype="i2_s", arch="bitnet-b1.58", n_layers=1)
    q = model_metadata(p)["quantization"]
    assert q["file_type"] == "MOSTLY_I2_S" and q["ternary_types"] == ["I2_S"]
    assert q["ternary_bits_per_weight"] == pytest.approx(2.0, abs=0.02)  # 2 bits + a 32-byte tail per tensor
