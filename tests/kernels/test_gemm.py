"""Ternary GEMV/GEMM kernels: bit-identical to the numpy reference on every runnable variant."""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_kernels.layout import pack_ternary
from bitnet_kernels.library import KernelLibrary

from bitnet_sdk.ternary import TernaryTensor, ternary_linear, ternary_matmul_int
from tests.kernels.conftest import library

# (rows, k, tokens): row tails (not a multiple of 4 or of any vector width), k below,
# at and above a block, tokens below/at/above the GEMM tile, and one threaded case.
SHAPES = [
    (1, 1, 1), (3, 17, 1), (5, 255, 2), (8, 256, 1), (9, 257, 3), (31, 700, 4),
    (64, 1024, 5), (33, 1536, 8), (6, 4096, 13), (900, 2560, 4), (130, 768, 1),
]  # fmt: skip


def _case(rng: np.random.Generator, rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = rng.integers(-1, 2, size=(rows, k)).astype(np.int8)
    scale = rng.uniform(0.001, 3.0, rows).astype(np.float32)
    return q, scale


@pytest.mark.parametrize(("rows", "k", "n"), SHAPES)
def test_matmul_int_is_exact(lib: KernelLibrary, rows: int, k: int, n: int) -> None:
    rng = np.random.default_rng(rows * 1000 + k + n)
    q, scale = _case(rng, rows, k)
    xq = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    got = lib.matmul_int(lib.pack(q, scale), xq)
    assert got.dtype == np.int32 and got.shape == (n, rows)
    np.testing.assert_array_equal(got, ternary_matmul_int(q, xq))


@pytest.mark.parametrize(("rows", "k", "n"), SHAPES)
def test_matmul_float_equals_ternary_linear_bit_for_bit(lib: KernelLibrary, rows: int, k: int, n: int) -> None:
    rng = np.random.default_rng(rows + 7 * k + n)
    q, scale = _case(rng, rows, k)
    x = (rng.standard_normal((n, k)) * rng.uniform(0.01, 50.0, (n, 1))).astype(np.float32)
    got = lib.matmul(lib.pack(q, scale), x)
    assert got.dtype == np.float32 and got.shape == (n, rows)
    np.testing.assert_array_equal(got, ternary_linear(TernaryTensor(q, scale), x))


@pytest.mark.parametrize("w", [-1, 1])
@pytest.mark.parametrize("xv", [-128, 127])
def test_extreme_values_do_not_saturate(lib: KernelLibrary, w: int, xv: int) -> None:
    """``vpmaddubsw`` saturates at ±32767: all-extreme inputs must still be exact."""
    k, rows = 8192, 12
    q = np.full((rows, k), w, dtype=np.int8)
    q[::3, ::2] = -w  # mix signs within a row too
    xq = np.full((5, k), xv, dtype=np.int8)
    np.testing.assert_array_equal(lib.matmul_int(lib.pack(q, np.ones(rows, np.float32)), xq),
                                  ternary_matmul_int(q, xq))  # fmt: skip


def test_per_row_scales_are_honoured(lib: KernelLibrary) -> None:
    q = np.ones((4, 256), dtype=np.int8)
    scale = np.array([1.0, 2.0, 0.5, 0.0], dtype=np.float32)
    x = np.ones((1, 256), dtype=np.float32)
    # xq = 127 everywhere, a = 127: y = 256 * 127 * scale / 127 = 256 * scale.
    np.testing.assert_array_equal(lib.matmul(lib.pack(q, scale), x), [[256.0, 512.0, 128.0, 0.0]])


def test_thread_count_does_not_change_results() -> None:
    """Big enough (> 2**23 MACs) for the rows to be split over threads."""
    one, two = library("generic", 1), library("generic", 3)
    rng = np.random.default_rng(3)
    q, scale = _case(rng, 1517, 2304)
    x = rng.standard_normal((6, 2304)).astype(np.float32)
    p = one.pack(q, scale)
    np.testing.assert_array_equal(one.matmul(p, x), two.matmul(p, x))


def test_zero_tokens_give_an_empty_result(lib: KernelLibrary) -> None:
    p = pack_ternary(np.zeros((3, 10), np.int8), np.ones(3, np.float32))
    assert lib.matmul(p, np.zeros((0, 10), np.float32)).shape == (0, 3)
    assert lib.matmul_int(p, np.zeros((0, 10), np.int8)).shape == (0, 3)


def test_bad_inputs_are_rejected(lib: KernelLibrary) -> None:
    p = pack_ternary(np.zeros((3, 10), np.int8), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="do not match"):
        lib.matmul(p, np.zeros((1, 11), np.float32))
    with pytest.raises(TypeError, match="int8"):
        lib.matmul_int(p, np.zeros((1, 10), np.int16))
    with pytest.raises(TypeError, match="PackedTernary"):
        lib.matmul(np.zeros((3, 10), np.int8), np.zeros((1, 10), np.float32))  # type: ignore[arg-type]
