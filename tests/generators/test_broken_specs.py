"""Specs the generators cannot express fail loudly, with every problem listed at once.

Each file under ``broken/`` states what it expects in ``# expect: <pointer> :: <text>``
lines; the report must hold exactly those problems (no more), each at its JSON pointer.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bitnet_generators import SpecError
from bitnet_generators.build import build_api
from bitnet_generators.spec import load_spec

from bitnet_sdk.cli.main import main as bitnet

BROKEN = sorted((Path(__file__).resolve().parent / "broken").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\S+) :: (.+)$", re.M)


def expectations(path: Path) -> list[tuple[str, str]]:
    found = EXPECT.findall(path.read_text(encoding="utf-8"))
    assert found, f"{path.name} states no expectations"
    return found


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_every_problem_is_reported_with_its_pointer(path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        build_api(load_spec(path))
    problems = caught.value.problems
    expected = expectations(path)
    unmatched = [(ptr, text) for ptr, text in expected
                 if not any(p.pointer == ptr and text in p.message for p in problems)]
    assert not unmatched, f"not reported: {unmatched}\nreported: {[str(p) for p in problems]}"
    assert len(problems) == len(expected), [str(p) for p in problems]
    assert str(caught.value).startswith(f"{path.name}: {len(expected)} unsupported constructs:")


def test_the_folder_covers_the_unsupported_constructs() -> None:
    assert len(BROKEN) >= 6
    assert sum(len(expectations(p)) for p in BROKEN) >= 30


@pytest.mark.parametrize("language", ["python", "typescript", "go"])
def test_cli_refuses_a_broken_spec_and_writes_nothing(language: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = BROKEN[0]
    out = tmp_path / "out"
    status = bitnet(["sdk", "generate", "--lang", language, "--out", str(out), "--spec", str(spec)])
    err = capsys.readouterr().err
    assert status == 1
    for pointer, _ in expectations(spec):
        assert pointer in err
    assert not out.exists()
