"""Output-head kernels: F16/F32 rows read as stored, int8 rows with per-row scales."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from bitnet_kernels import HeadMatrix
from bitnet_kernels.library import KernelLibrary

from tests.kernels.conftest import library


def _case(rows: int, d: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, d)).astype(np.float16), rng.standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize(("rows", "d", "n"), [(1, 64, 1), (7, 256, 1), (1003, 256, 3), (64, 2560, 5)])
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_float_heads_match_a_float64_product(lib: KernelLibrary, rows: int, d: int, n: int, dtype: type) -> None:
    w16, x = _case(rows, d, n)
    w = w16.astype(dtype)
    h = lib.prepare_head(w)
    assert h.kind == {np.float16: "f16", ml_dtypes.bfloat16: "bf16", np.float32: "f32"}[dtype]
    assert np.shares_memory(h.data, w)  # kept as stored: no copy
    want = x.astype(np.float64) @ w.astype(np.float64).T
    got = lib.head(h, x)
    assert got.dtype == np.float32 and got.shape == (n, rows)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.sqrt(d) * np.abs(want).max())


@pytest.mark.parametrize("isa", ["avx512vnni", "avx2", "generic"])
def test_float16_values_convert_exactly(isa: str) -> None:
    """One-hot activations read single weights back: subnormals, signed zero, extremes."""
    lib = library(isa)
    specials = np.array([6e-8, -6e-8, 1e-5, -0.0, 0.0, 65504, -65504, 6.1035e-5, 1 / 3, -2.5] * 7,
                        dtype=np.float16)[:64]  # fmt: skip
    w = np.stack([specials, specials[::-1]])
    got = lib.head(lib.prepare_head(w), np.eye(64, dtype=np.float32))
    np.testing.assert_array_equal(got.T, w.astype(np.float32))


@pytest.mark.parametrize("isa", ["avx512vnni", "avx2", "generic"])
def test_bfloat16_values_convert_exactly(isa: str) -> None:
    """One-hot activations read single weights back: subnormals, signed zero, extremes."""
    lib = library(isa)
    specials = np.array([1e-40, -1e-40, 1e-5, -0.0, 0.0, 3.3e38, -3.3e38, 1.0, 1 / 3, -2.5] * 7,
                        dtype=np.float32).astype(ml_dtypes.bfloat16)[:64]  # fmt: skip
    w = np.stack([specials, specials[::-1]])
    h = lib.prepare_head(w)
    assert h.kind == "bf16" and np.shares_memory(h.data, w)
    got = lib.head(h, np.eye(64, dtype=np.float32))
    np.testing.assert_array_equal(got.T, w.astype(np.float32))


def test_int8_head_is_per_row_absmax(lib: KernelLibrary) -> None:
    w16, x = _case(37, 256, 2, seed=3)
    w16[5] = 0  # an all-zero row gets scale 0, not a division by zero
    h = lib.prepare_head(w16, "int8")
    w = w16.astype(np.float32)
    scale = np.abs(w).max(1) / np.float32(127)
    np.testing.assert_array_equal(h.scale, scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        want_q = np.where(scale[:, None] > 0, np.rint(w * (np.float32(127) / np.abs(w).max(1))[:, None]), 0)
    np.testing.assert_array_equal(h.data, want_q.astype(np.int8))
    want = (x.astype(np.float64) @ h.data.astype(np.float64).T) * h.scale
    np.testing.assert_allclose(lib.head(h, x), want, rtol=1e-5, atol=1e-4)
    assert h.nbytes < w16.nbytes  # a quarter of float32, half of float16 (plus the scales)


def test_thread_count_does_not_change_results() -> None:
    w, x = _case(4099, 512, 2)
    one, two = library("generic", 1), library("generic", 2)
    np.testing.assert_array_equal(one.head(one.prepare_head(w), x), two.head(two.prepare_head(w), x))


def test_widths_the_vectors_do_not_divide_fall_back(lib: KernelLibrary) -> None:
    w, x = _case(9, 70, 2)
    want = x.astype(np.float64) @ w.astype(np.float64).T
    np.testing.assert_allclose(lib.head(lib.prepare_head(w), x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lib.head(lib.prepare_head(w, "int8"), x), want, rtol=0.05, atol=0.1)


def test_bad_inputs_are_rejected(lib: KernelLibrary) -> None:
    w, x = _case(8, 64, 1)
    h = lib.prepare_head(w)
    with pytest.raises(ValueError, match="do not match"):
        lib.head(h, np.ones((1, 63), np.float32))
    with pytest.raises(TypeError, match="HeadMatrix"):
        lib.head(w, x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        lib.prepare_head(w, "int4")
    with pytest.raises(ValueError, match="2-D"):
        lib.prepare_head(np.ones(8, np.float16))
    with pytest.raises(ValueError, match="scales"):
        HeadMatrix(np.ones((2, 64), np.int8), None, "i8")
