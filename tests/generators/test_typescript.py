"""The generated TypeScript SDK compiles with ``tsc --strict`` (the pinned compiler) and its
runtime passes tests/generators/typescript/runtime.test.mjs under ``node --test`` (real HTTP
against node:http servers)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ._toolchain import run, tsc

HERE = Path(__file__).resolve().parent


def test_typescript_sdk_compiles_strict_and_its_runtime_behaves(sdk_dir: Callable[[str], Path],
                                                                 tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    shutil.copytree(sdk_dir("typescript"), sdk)
    run([tsc(), "-p", "tsconfig.json", "--strict"], sdk)
    assert (sdk / "dist" / "index.d.ts").exists()
    out = run(["node", "--test", str(HERE / "typescript" / "runtime.test.mjs")], sdk,
              env={"SDK_DIST": (sdk / "dist").as_uri()}, timeout=300)
    assert "# fail 0" in out
