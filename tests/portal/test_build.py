"""The committed portal build is what its sources build to, and the sources type-check
against the generated TypeScript SDK (esbuild and tsc pinned by portal/package-lock.json).
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest

from tests.generators._toolchain import run

ROOT = Path(__file__).resolve().parents[2]
PORTAL = ROOT / "portal"
BUILT = ROOT / "bitnet_sdk" / "server" / "portal_static"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """``portal/node_modules`` (``npm ci`` once, under a lock; gitignored)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise AssertionError("Node 18+ and npm are required to build the portal")
    modules = PORTAL / "node_modules"
    with open(PORTAL / "package-lock.json", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ((modules / ".bin" / "esbuild").exists() and (modules / ".bin" / "tsc").exists()):
            run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], PORTAL)
    return modules


def test_portal_type_checks(node_modules: Path) -> None:
    run([str(node_modules / ".bin" / "tsc"), "--noEmit", "-p", "tsconfig.json"], PORTAL)


def test_committed_build_is_current(node_modules: Path, tmp_path: Path) -> None:
    run(["node", "build.mjs", str(tmp_path)], PORTAL)
    built = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in BUILT.iterdir()}
    assert sorted(built) == sorted(committed)
    stale = [name for name in built if built[name] != committed[name]]
    assert not stale, f"rebuild the portal (cd portal && npm ci && npm run build): {stale} differ"
