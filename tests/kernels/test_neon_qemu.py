"""NEON variants, proven without an Arm machine.

Each variant's kernels are compiled for ``aarch64-unknown-linux-gnu``, linked
into a static C driver with the Debian cross toolchain and run under
``qemu-aarch64``: ``neon`` on a Cortex-A53 (Armv8.0, no dot product),
``neondot`` on qemu's ``max`` CPU (which has ``sdot``). Outputs must equal the
numpy reference exactly for the integer paths and the float rescale, and
within float32 rounding for the element-wise ops.
"""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_kernels.layout import pack_ternary, padded

from bitnet_sdk.model import ops
from bitnet_sdk.ternary import (
    TernaryTensor,
    quantize_activations,
    ternary_linear,
    ternary_matmul_int,
)
from tests.kernels._cross import AARCH64, build_harness, run_harness

# (rows, k, tokens): tails of every kind, k not a multiple of 256, more tokens than a tile.
CASES = [(1, 1, 1), (7, 300, 3), (13, 513, 5), (64, 1024, 4), (37, 2000, 9)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    AARCH64.ensure()
    workdir = tmp_path_factory.mktemp("neon")
    return {name: build_harness(name, AARCH64, workdir) for name in ("neon", "neondot")} | {"dir": workdir}


@pytest.mark.parametrize(("isa_name", "qemu_cpu"), [("neon", "cortex-a53"), ("neondot", "max")])
def test_neon_variant_matches_reference_under_qemu(built: dict, isa_name: str, qemu_cpu: str) -> None:
    rng = np.random.default_rng(1234)
    for rows, k, n in CASES:
        q = rng.integers(-1, 2, size=(rows, k)).astype(np.int8)
        scale = rng.uniform(0.01, 2.0, rows).astype(np.float32)
        x = (rng.standard_normal((n, k)) * rng.uniform(0.1, 30.0, (n, 1))).astype(np.float32)
        nw = rng.standard_normal(k).astype(np.float32)
        p = pack_ternary(q, scale)
        out = run_harness(built[isa_name], AARCH64, qemu_cpu, p, x, nw, padded(n, 4), built["dir"])
        where = f"{isa_name} rows={rows} k={k} n={n}"
        xq, a = quantize_activations(x)
        np.testing.assert_array_equal(out["xq"][:n, :k], xq, err_msg=where)
        assert not out["xq"][:n, k:].any(), where
        np.testing.assert_array_equal(out["a"][:n], a, err_msg=where)
        np.testing.assert_array_equal(out["xsum"][:n], xq.sum(axis=1, dtype=np.int32), err_msg=where)
        acc = ternary_matmul_int(q, xq)
        np.testing.assert_array_equal(out["gemv_i32"], acc, err_msg=where)
        np.testing.assert_array_equal(out["gemm_i32"], acc, err_msg=where)
        y = ternary_linear(TernaryTensor(q, scale), x)
        np.testing.assert_array_equal(out["gemv_f32"], y, err_msg=where)
        np.testing.assert_array_equal(out["gemm_f32"], y, err_msg=where)
        np.testing.assert_allclose(out["rms_norm"], ops.rms_norm(x, nw, 1e-6), rtol=2e-6, atol=1e-6, err_msg=where)
        np.testing.assert_allclose(out["softmax"], ops.softmax(x), rtol=4e-6, atol=1e-30, err_msg=where)
        with np.errstate(over="ignore"):
            silu = ops.silu(x)
        np.testing.assert_allclose(out["silu"], silu, rtol=4e-6, atol=1e-30, err_msg=where)
        np.testing.assert_array_equal(out["relu2"], ops.relu2(x), err_msg=where)


def test_neondot_really_uses_the_dot_product_instructions(built: dict) -> None:
    """On a CPU without FEAT_DotProd the ``neondot`` code must trap: it is not plain NEON."""
    rng = np.random.default_rng(5)
    q = rng.integers(-1, 2, size=(8, 256)).astype(np.int8)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    p = pack_ternary(q, np.ones(8, np.float32))
    with pytest.raises(AssertionError, match="harness failed"):
        run_harness(built["neondot"], AARCH64, "cortex-a53", p, x, np.ones(256, np.float32), 4, built["dir"])
