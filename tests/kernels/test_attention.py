"""The native grouped-query attention kernel against the numpy reference (``ops.attention``)."""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_kernels.fused import FusedStepKernel
from bitnet_kernels.isa import select_isa

from bitnet_sdk.backends import ops


@pytest.fixture(scope="module")
def kernel() -> FusedStepKernel:
    return FusedStepKernel(select_isa(None), use_cache=False)


@pytest.mark.parametrize(("n", "h", "hkv", "d", "start"), [
    (1, 4, 2, 64, 0), (1, 8, 2, 32, 40), (7, 4, 4, 64, 0), (16, 20, 5, 128, 30), (3, 6, 3, 24, 9), (5, 2, 1, 7, 2),
])  # fmt: skip
def test_attention_matches_the_reference(kernel: FusedStepKernel, n: int, h: int, hkv: int, d: int,
                                         start: int) -> None:  # fmt: skip
    rng = np.random.default_rng(n * 1000 + d)
    t = start + n
    q = rng.standard_normal((n, h, d), dtype=np.float32)
    k, v = (rng.standard_normal((t, hkv, d), dtype=np.float32) for _ in range(2))
    positions = np.arange(start, t)
    got = kernel.attention(q, k, v, positions, num_threads=2)
    np.testing.assert_allclose(got, ops.attention(q, k, v, positions), rtol=2e-5, atol=2e-6)


def test_the_thread_split_does_not_change_a_value(kernel: FusedStepKernel) -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((9, 20, 128), dtype=np.float32)
    k, v = (rng.standard_normal((300, 5, 128), dtype=np.float32) for _ in range(2))
    positions = np.arange(291, 300)
    one = kernel.attention(q, k, v, positions, num_threads=1)
    for threads in (2, 3):
        np.testing.assert_array_equal(kernel.attention(q, k, v, positions, num_threads=threads), one)
