"""Run schemathesis (its CLI, as an operator would) against a live server.

Bounded by a fixed number of examples per operation (schemathesis'
``--max-time`` would instead keep fuzzing until the budget is spent) and a
hard subprocess timeout, so the suite's duration does not drift. Every check is on
(``--checks all``): server errors, schema conformance of responses, status codes
and content types the spec documents, negative data rejected with 4xx.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from bitnet_sdk.server.spec import spec_path

__all__ = ["run_schemathesis"]


def run_schemathesis(
    base_url: str,
    operation_ids: Iterable[str],
    headers: dict[str, str] | None = None,
    *,
    max_examples: int = 25,
    max_time_s: int = 600,
    spec: Path | None = None,
    exclude_checks: Iterable[str] = (),
    extra_args: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Fuzz the operations; returns the finished process (``returncode`` 0: no failure)."""
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    args = [
        exe, "run", str(spec or spec_path()),
        "--url", base_url,
        "--checks", "all",
        "--max-examples", str(max_examples),
        "--seed", "1",
        "--workers", "1",
        "--request-timeout", "30",
        "--no-color",
        "--generation-database", "none",
        "--warnings", "off",
    ]
    for op in sorted(set(operation_ids)):
        args += ["--include-operation-id", op]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    for check in exclude_checks:
        args += ["--exclude-checks", check]
    args += list(extra_args)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(args, capture_output=True, text=True, timeout=max_time_s,
                          env=env, check=False)
