"""``bitnet generate``: streams the completion to stdout, timing to stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitnet_sdk.cli.main import main
from bitnet_sdk.model.loader import load
from bitnet_sdk.testing.synthetic import build_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("cli") / "cli.gguf", n_layers=1, seed=4)


def test_generate_prints_prompt_completion_and_timing(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", str(model_path), "-p", "Hello", "-n", "6", "--backend", "numpy"])
    out, err = capsys.readouterr()
    assert code == 0
    expected = load(model_path, backend="numpy").complete("Hello", max_tokens=6)
    assert out == "Hello" + expected.text + "\n"
    assert f"[{expected.finish_reason}]" in err and "tok/s" in err


def test_sampling_flags_are_passed_through(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["generate", str(model_path), "-p", "Hi", "-n", "8", "--temperature", "30", "--seed", "3", "--top-k", "40"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first
    expected = load(model_path).complete("Hi", max_tokens=8, temperature=30.0, seed=3, top_k=40)
    assert first == "Hi" + expected.text + "\n"


def test_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tmp_path / "nope.gguf"), "-p", "x"]) == 1
    assert "cannot load" in capsys.readouterr().err


def test_unknown_backend_is_an_error(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(model_path), "-p", "x", "--backend", "no-such-backend"]) == 1
    assert "no-such-backend" in capsys.readouterr().err


def test_bad_sampling_setting_is_an_error(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(model_path), "-p", "x", "--top-p", "0"]) == 2
    assert "top_p" in capsys.readouterr().err
