"""``bitnet quantize``: exit codes, printed report, JSON, progress bar, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitnet_sdk.cli.main import main
from bitnet_sdk.model.gguf_file import read_model
from tests.quantization._support import build_onnx_mlp


def test_quantize_prints_a_report(tmp_path: Path, hf_checkpoint: tuple[Path, dict], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.gguf"
    code = main(["quantize", str(hf_checkpoint[0]), str(out), "--type", "tq1_0", "--backend", "numpy",
                 "--text", "The quick brown fox.", "--calibration-samples", "4"])
    captured = capsys.readouterr()
    assert code == 0
    assert read_model(out).tensor_info("blk.0.attn_q.weight").type_name == "TQ1_0"
    assert captured.out.startswith(f"OK  {out}  (llm, bitnet, TQ1_0)")
    for word in ("compression", "bits/weight", "relative error", "output cosine", "perplexity"):
        assert word in captured.out
    assert "tensor/s" not in captured.err  # no bar: stderr is not a terminal (see tests/cli)


def test_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_onnx_mlp(tmp_path / "m.onnx")
    code = main(["quantize", str(tmp_path / "m.onnx"), str(tmp_path / "m.gguf"), "--type", "i2_s", "--json",
                 "--keep", "fc0.*", "--backend", "numpy"])
    captured = capsys.readouterr()
    assert code == 0
    report = json.loads(captured.out)
    assert report["qtype"] == "i2_s" and report["model_kind"] == "dense"
    assert report["tensors_kept"] == 1 and report["tensors_quantized"] == 2
    assert report["quantized_bytes"] == (tmp_path / "m.gguf").stat().st_size
    assert captured.err == ""  # no bar with --json


def test_refusals_exit_1_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.txt").write_text("not a model")
    assert main(["quantize", str(tmp_path / "junk.txt"), str(tmp_path / "o.gguf"), "--no-progress"]) == 1
    assert "not a supported source" in capsys.readouterr().err
    assert not (tmp_path / "o.gguf").exists()
    build_onnx_mlp(tmp_path / "m.onnx")
    (tmp_path / "exists.gguf").write_bytes(b"keep me")
    assert main(["quantize", str(tmp_path / "m.onnx"), str(tmp_path / "exists.gguf")]) == 1
    assert "use --force" in capsys.readouterr().err
    assert (tmp_path / "exists.gguf").read_bytes() == b"keep me"
    assert main(["quantize", str(tmp_path / "m.onnx"), str(tmp_path / "exists.gguf"), "--force", "--no-progress", "--backend", "numpy"]) == 0
    assert read_model(tmp_path / "exists.gguf").arch == "bitnet-dense"
