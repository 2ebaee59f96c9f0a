"""The real toolchains the generated SDKs are built with: tsc (pinned in
``generators/toolchain``, installed with ``npm ci`` on first use into its gitignored
``node_modules``), Go, and ruff for the Python SDK.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN = ROOT / "generators" / "toolchain"
EXAMPLES = ROOT / "examples" / "sdk"


def run(cmd: list[str], cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run ``cmd``; fail with its output when it exits non-zero."""
    done = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} (in {cwd}) exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def node_modules() -> Path:
    """``generators/toolchain/node_modules`` with the pinned TypeScript (``npm ci`` once, under a lock)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise AssertionError("Node 18+ and npm are required to build the TypeScript SDK")
    modules = TOOLCHAIN / "node_modules"
    with open(TOOLCHAIN / "package-lock.json", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes install once
        if not (modules / ".bin" / "tsc").exists():
            run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], TOOLCHAIN)
    return modules


def tsc() -> str:
    return str(node_modules() / ".bin" / "tsc")


def go() -> str:
    path = shutil.which("go")
    if path is None:
        raise AssertionError("Go 1.23+ is required to build the Go SDK")
    return path


def go_env() -> dict[str, str]:
    """No network for builds: the SDK and examples use the standard library only."""
    return {"GOFLAGS": "-mod=mod -buildvcs=false", "GOPROXY": "off", "GOWORK": "off", "GOTOOLCHAIN": "local"}
