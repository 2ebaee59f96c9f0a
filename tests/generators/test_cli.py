"""``bitnet sdk generate`` writes each SDK (the same files as the library call)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bitnet_generators.render import MANIFEST

from bitnet_sdk.cli.main import main as bitnet


@pytest.mark.parametrize("language", ["typescript", "go"])
def test_generate_writes_the_sdk(language: str, tmp_path: Path, rendered: dict[str, dict[str, str]],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / language
    assert bitnet(["sdk", "generate", "--lang", language, "--out", str(out)]) == 0
    files = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST}
    assert files == rendered[language]
    assert f"{len(files)} files" in capsys.readouterr().out


def test_go_module_path_and_package_are_options(tmp_path: Path) -> None:
    out = tmp_path / "go"
    assert bitnet(["sdk", "generate", "--lang", "go", "--out", str(out), "--go-module", "git.example.org/x/bn",
                   "--go-package", "bn"]) == 0
    assert "module git.example.org/x/bn\n" in (out / "go.mod").read_text()
    assert all("\npackage bn\n" in p.read_text() for p in out.glob("*.go"))


def test_repository_option_sets_metadata_and_the_go_module(tmp_path: Path) -> None:
    repo = "https://github.com/acme/bitnet-go"
    assert bitnet(["sdk", "generate", "--lang", "go", "--out", str(tmp_path / "go"), "--repository", repo]) == 0
    assert "module github.com/acme/bitnet-go\n" in (tmp_path / "go" / "go.mod").read_text()
    assert bitnet(["sdk", "generate", "--lang", "typescript", "--out", str(tmp_path / "ts"), "--repository", repo]) == 0
    assert f'"url": "{repo}"' in (tmp_path / "ts" / "package.json").read_text()


def test_unknown_language_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        bitnet(["sdk", "generate", "--lang", "cobol", "--out", "x"])
    assert caught.value.code == 2
