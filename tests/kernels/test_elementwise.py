"""Element-wise kernels against ``bitnet_sdk.backends.ops``, and the ``exp`` they share."""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_kernels.compiler import jit_module
from bitnet_kernels.elementwise import _build_map, emit_exp
from bitnet_kernels.isa import ISAS, supported_isas
from bitnet_kernels.library import KernelLibrary
from llvmlite import ir

from bitnet_sdk.backends import ops


def _x(shape: tuple[int, ...], seed: int, spread: float = 8.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * spread).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (3, 64), (30, 2560), (2, 3, 100)])
def test_rms_norm(lib: KernelLibrary, shape: tuple[int, ...]) -> None:
    x = _x(shape, 1)
    w = _x(shape[-1:], 2, 1.0)
    np.testing.assert_allclose(lib.rms_norm(x, w, 1e-5), ops.rms_norm(x, w, 1e-5), rtol=3e-6, atol=1e-7)


def test_rms_norm_rejects_wrong_weight(lib: KernelLibrary) -> None:
    with pytest.raises(ValueError, match="does not match"):
        lib.rms_norm(np.ones((2, 8), np.float32), np.ones(7, np.float32), 1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (4, 129), (3, 32000), (2, 2, 33)])
def test_softmax(lib: KernelLibrary, shape: tuple[int, ...]) -> None:
    x = _x(shape, 3, 20.0)
    got = lib.softmax(x)
    np.testing.assert_allclose(got, ops.softmax(x), rtol=5e-6, atol=1e-35)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=1e-5)


def test_softmax_with_masked_entries(lib: KernelLibrary) -> None:
    x = np.array([[0.0, -np.inf, 1.0, -np.inf, -200.0]], np.float32)
    np.testing.assert_allclose(lib.softmax(x), ops.softmax(x), rtol=5e-6, atol=0)


@pytest.mark.parametrize("size", [1, 7, 16, 1001, 70000])
def test_silu_and_relu2(lib: KernelLibrary, size: int) -> None:
    x = _x((size,), size, 30.0)
    with np.errstate(over="ignore"):
        ref = ops.silu(x)
    np.testing.assert_allclose(lib.silu(x), ref, rtol=5e-6, atol=1e-37)
    np.testing.assert_array_equal(lib.relu2(x), ops.relu2(x))


def test_relu2_propagates_nan_and_zeroes_negatives(lib: KernelLibrary) -> None:
    got = lib.relu2(np.array([np.nan, -3.0, -0.0, 2.0], np.float32))
    assert np.isnan(got[0]) and list(got[1:]) == [0.0, 0.0, 4.0]


@pytest.fixture(scope="module")
def exp_kernel() -> object:
    """A one-off kernel mapping ``emit_exp`` over an array, for the best runnable variant."""
    import ctypes

    isa = ISAS[supported_isas()[0]]
    module = ir.Module(name="exp_test")
    _build_map(module, isa, "exp_map", emit_exp)
    jm = jit_module(module, isa, use_cache=False)
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(
        jm.address("exp_map"))

    def run(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        fn(x.ctypes.data, out.ctypes.data, 0, x.size)
        return out

    run.keep = jm  # type: ignore[attr-defined]
    return run


def test_exp_is_within_two_ulp_over_the_whole_range(exp_kernel) -> None:
    x = np.concatenate([
        np.linspace(-104.5, 89.5, 200_001, dtype=np.float32),
        np.array([0.0, -0.0, 1.0, 88.72, 88.7228, -87.33, -103.97, 1e-30, -1e-30], np.float32),
    ])  # fmt: skip
    got = exp_kernel(x).astype(np.float64)
    with np.errstate(over="ignore"):
        ref = np.exp(x.astype(np.float64))
        ref32 = ref.astype(np.float32)
    finite = np.isfinite(ref32) & (ref32 >= np.finfo(np.float32).tiny)
    ulp = np.spacing(ref32[finite]).astype(np.float64)
    err = np.abs(got[finite] - ref[finite]) / ulp
    assert err.max() <= 2.0, f"worst {err.max():.2f} ulp at x={x[finite][err.argmax()]!r}"
    sub = ref32 < np.finfo(np.float32).tiny  # gradual underflow: absolute error of a subnormal ulp
    assert np.max(np.abs(got[sub] - ref[sub])) <= 2 * 2.0**-149
    assert np.all(np.isinf(got[~np.isfinite(ref32)]))


def test_exp_special_values(exp_kernel) -> None:
    got = exp_kernel(np.array([np.inf, -np.inf, np.nan, -1000.0, 1000.0], np.float32))
    assert got[0] == np.inf and got[1] == 0.0 and np.isnan(got[2]) and got[3] == 0.0 and got[4] == np.inf
