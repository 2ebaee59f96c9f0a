"""NEON variants, proven without an Arm machine.

Each variant's kernels are compiled for ``aarch64-unknown-linux-gnu``, linked
into a static C driver with the Debian cross toolchain and run under
``qemu-aarch64``: ``neon`` on a Cortex-A53 (Armv8.0, no dot product),
``neondot`` on qemu's ``max`` CPU (which has ``sdot``). Outputs must equal the
numpy reference exactly for the integer paths and the float rescale, and
within float32 rounding for the element-wise ops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bitnet_kernels.layout import pack_ternary, padded

from tests.kernels._cross import (
    AARCH64,
    CASES,
    build_harness,
    check_outputs,
    random_case,
    run_harness,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    AARCH64.ensure()
    workdir = tmp_path_factory.mktemp("neon")
    return {name: build_harness(name, AARCH64, workdir) for name in ("neon", "neondot")} | {"dir": workdir}


@pytest.mark.parametrize(("isa_name", "qemu_cpu"), [("neon", "cortex-a53"), ("neondot", "max")])
def test_neon_variant_matches_reference_under_qemu(built: dict[str, Path], isa_name: str, qemu_cpu: str) -> None:
    rng = np.random.default_rng(1234)
    for rows, k, n in CASES:
        q, scale, x, nw = random_case(rng, rows, k, n)
        out = run_harness(built[isa_name], AARCH64, qemu_cpu, pack_ternary(q, scale), x, nw,
                          padded(n, 4), built["dir"], q)  # fmt: skip
        check_outputs(out, q, scale, x, nw, f"{isa_name} rows={rows} k={k} n={n}")


def test_neondot_really_uses_the_dot_product_instructions(built: dict[str, Path]) -> None:
    """On a CPU without FEAT_DotProd the ``neondot`` code must trap: it is not plain NEON."""
    q, scale, x, nw = random_case(np.random.default_rng(5), 8, 256, 4)
    with pytest.raises(AssertionError, match="harness failed"):
        run_harness(built["neondot"], AARCH64, "cortex-a53", pack_ternary(q, scale), x, nw, 4, built["dir"], q)
