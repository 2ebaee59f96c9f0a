"""``bitnet backends``: the table, ``--json`` and the exit status."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bitnet_sdk import backends
from bitnet_sdk.cli.main import main


@pytest.fixture(autouse=True)
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("BITNET_BACKEND", raising=False)
    monkeypatch.delenv("BITNET_DISABLE_PLUGINS", raising=False)
    backends.reset()
    yield
    backends.reset()


def test_json_is_the_describe_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(json.dumps(backends.describe()))
    assert doc["auto"] and doc["device"] == "cpu"
    assert "numpy" in [b["name"] for b in doc["backends"]]


def test_table_names_backends_and_the_auto_pick(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITNET_BACKEND", "numpy")
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    header, numpy_row = out.splitlines()[0], next(ln for ln in out.splitlines() if ln.startswith("numpy "))
    assert header.split() == ["NAME", "PRIO", "DEVICES", "STATUS", "PLUGIN", "CAPABILITIES"]
    assert numpy_row.split()[:5] == ["numpy", "0", "cpu", "ok", "numpy"]
    assert "matmul_int" in numpy_row
    assert out.rstrip().endswith("auto (cpu) -> numpy [env]")


def test_nothing_usable_exits_1_and_says_why(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITNET_DISABLE_PLUGINS", "all")
    assert main(["backends", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "disabled by BITNET_DISABLE_PLUGINS: " in out and "numpy" in out
    assert "auto (cpu) -> none: no backend can run on device 'cpu'" in out


def test_table_shows_the_variant_the_auto_pick_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The llvm JIT names the ISA it picked (issue #4); backends without variants show none."""
    from bitnet_kernels.isa import select_isa

    monkeypatch.setenv("BITNET_BACKEND", "llvm")
    assert main(["backends"]) == 0
    out = capsys.readouterr().out.rstrip()
    assert out.endswith(f"auto (cpu) -> llvm ({select_isa().name}) [env]")
