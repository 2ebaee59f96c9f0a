"""x86 variants on CPUs this host is not: AVX2 on a Haswell, ``generic`` on a pre-AVX CPU.

The native tests run every variant on this host, which may have AVX-512: they
cannot tell whether the ``avx2`` or ``generic`` code accidentally uses newer
instructions. Here the same static C driver as the NEON tests runs under
``qemu-x86_64 -cpu Haswell`` / ``-cpu qemu64``, and the AVX-512 variant must
trap on the Haswell. (qemu 7.2's TCG emulates AVX2 but not AVX-512, so the
AVX-512 variants are only proven natively, on hosts that have it.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bitnet_kernels.layout import pack_ternary, padded

from tests.kernels._cross import (
    CASES,
    X86_64,
    build_harness,
    check_outputs,
    random_case,
    run_harness,
)

pytestmark = pytest.mark.skipif(
    __import__("platform").machine() not in ("x86_64", "AMD64"), reason="x86-64 host tools only"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    X86_64.ensure()
    workdir = tmp_path_factory.mktemp("x86")
    return {name: build_harness(name, X86_64, workdir) for name in ("avx2", "generic", "avx512")} | {
        "dir": workdir
    }


@pytest.mark.parametrize(("isa_name", "qemu_cpu"), [("avx2", "Haswell"), ("generic", "qemu64")])
def test_variant_matches_reference_on_an_older_cpu(built: dict[str, Path], isa_name: str, qemu_cpu: str) -> None:
    rng = np.random.default_rng(99)
    for rows, k, n in CASES:
        q, scale, x, nw = random_case(rng, rows, k, n)
        out = run_harness(built[isa_name], X86_64, qemu_cpu, pack_ternary(q, scale), x, nw,
                          padded(n, 4), built["dir"], q)  # fmt: skip
        check_outputs(out, q, scale, x, nw, f"{isa_name} rows={rows} k={k} n={n}")


@pytest.mark.parametrize(("isa_name", "qemu_cpu"), [("avx512", "Haswell"), ("avx2", "qemu64")])
def test_newer_variants_trap_on_older_cpus(built: dict[str, Path], isa_name: str, qemu_cpu: str) -> None:
    q, scale, x, nw = random_case(np.random.default_rng(6), 8, 256, 4)
    with pytest.raises(AssertionError, match="harness failed"):
        run_harness(built[isa_name], X86_64, qemu_cpu, pack_ternary(q, scale), x, nw, 4, built["dir"], q)
