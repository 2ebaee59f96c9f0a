"""The generated Go SDK builds with the real toolchain (gofmt-clean, go vet, go build) and its
runtime passes tests/generators/go/runtime_test.go (real HTTP against httptest servers)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ._toolchain import go, go_env, run

HERE = Path(__file__).resolve().parent


def test_go_sdk_is_gofmt_clean_vets_and_builds(sdk_dir: Callable[[str], Path], tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    shutil.copytree(sdk_dir("go"), sdk)
    gofmt = str(Path(go()).with_name("gofmt"))
    assert run([gofmt, "-l", "."], sdk).strip() == ""
    run([go(), "vet", "./..."], sdk, env=go_env())
    run([go(), "build", "./..."], sdk, env=go_env())


def test_go_runtime_behaviour(sdk_dir: Callable[[str], Path], tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    shutil.copytree(sdk_dir("go"), sdk)
    shutil.copy(HERE / "go" / "runtime_test.go", sdk / "runtime_test.go")
    out = run([go(), "test", "-count=1", "./..."], sdk, env=go_env(), timeout=900)
    assert "ok" in out
