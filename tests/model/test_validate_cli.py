"""`bitnet validate FILE [--json]`: exit 0 when valid, 1 with named problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitnet_sdk.cli.main import main
from bitnet_sdk.testing.synthetic import build_model, corrupt


def test_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = build_model(tmp_path / "m.gguf", n_layers=1, vocab=300)
    assert main(["validate", str(p)]) == 0
    assert capsys.readouterr().out.startswith("OK ")
    assert main(["validate", "--json", str(p)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["problems"] == [] and doc["arch"] == "bitnet"


def test_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = build_model(tmp_path / "m.gguf", n_layers=1, vocab=300, skip_tensors={"blk.0.ffn_up.weight"})
    bad = corrupt(p, tmp_path / "bad.gguf", append=b"junk" * 16)
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("INVALID") and "trailing_data" in out
    assert "missing_tensor [blk.0.ffn_up.weight]" in out
    assert main(["validate", "--json", "--quick", str(bad)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert {p["code"] for p in doc["problems"]} == {"trailing_data", "missing_tensor"}
    assert main(["validate", str(tmp_path / "nothing.gguf")]) == 1
    assert "file_missing" in capsys.readouterr().out
