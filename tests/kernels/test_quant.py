"""Activation quantization kernel: identical to ``bitnet_sdk.ternary.quantize_activations``."""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_kernels.library import KernelLibrary

from bitnet_sdk.ternary import quantize_activations


def _assert_same(lib: KernelLibrary, x: np.ndarray) -> None:
    got_q, got_a = lib.quantize_activations(x)
    ref_q, ref_a = quantize_activations(x)
    np.testing.assert_array_equal(got_a, ref_a)
    np.testing.assert_array_equal(got_q, ref_q)
    assert got_q.dtype == np.int8 and got_a.dtype == np.float32


@pytest.mark.parametrize(("n", "k"), [(1, 1), (1, 15), (3, 17), (2, 256), (5, 1000), (70, 2560)])
def test_random_activations(lib: KernelLibrary, n: int, k: int) -> None:
    rng = np.random.default_rng(n * k)
    x = (rng.standard_normal((n, k)) * rng.uniform(1e-3, 1e3, (n, 1))).astype(np.float32)
    _assert_same(lib, x)


def test_ties_round_half_to_even(lib: KernelLibrary) -> None:
    # amax = 127 gives a = 1 exactly, so x * a lands on the .5 ties themselves.
    row = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.0, 3.4999998], np.float32)
    x = np.tile(row, (2, 5))
    _assert_same(lib, x)
    xq, _ = lib.quantize_activations(x)
    np.testing.assert_array_equal(xq[0, :8], [127, 0, 2, 2, 0, -2, -2, 126])


def test_zero_and_tiny_tokens_use_the_eps_floor(lib: KernelLibrary) -> None:
    x = np.zeros((3, 40), np.float32)
    x[1, 3] = 1e-7  # below EPS: a = 127 / 1e-5
    x[2, :] = -3e-6
    _assert_same(lib, x)
    _, a = lib.quantize_activations(x)
    assert a[0] == np.float32(127.0) / np.float32(1e-5)


def test_padding_and_sums(lib: KernelLibrary) -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 300)).astype(np.float32)
    qa = lib.quantize(x, token_multiple=4)
    assert qa.xq.shape == (4, 512) and qa.n == 3 and qa.k == 300
    assert not qa.xq[:, 300:].any() and not qa.xq[3].any()
    np.testing.assert_array_equal(qa.xsum[:3], qa.xq[:3].sum(axis=1, dtype=np.int32))
    assert qa.xsum[3] == 0 and qa.a[3] == 1.0
    assert qa.xq.ctypes.data % 64 == 0


def test_non_contiguous_and_other_dtypes(lib: KernelLibrary) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 90))
    _assert_same(lib, np.asarray(x[::2, ::3]))  # float64, strided
    with pytest.raises(ValueError, match="2-D"):
        lib.quantize_activations(np.zeros(5, np.float32))
