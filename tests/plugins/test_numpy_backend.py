"""The numpy reference backend: exact against bitnet_sdk.ternary, complete for every op."""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_numpy import NumpyBackend

from bitnet_sdk.backends import OPTIONAL_OPS, REQUIRED_OPS, BackendHost, ops
from bitnet_sdk.ternary import TernaryTensor, quantize_activations, quantize_weights, ternary_linear


def _tensor(rng: np.random.Generator, rows: int, cols: int) -> TernaryTensor:
    """Random ternary codes with a distinct scale per row (as files from other tools carry)."""
    q = rng.integers(-1, 2, size=(rows, cols), dtype=np.int8)
    return TernaryTensor(q, rng.uniform(0.01, 3.0, rows).astype(np.float32))


@pytest.mark.parametrize(("n", "rows", "cols"), [(1, 1, 1), (1, 33, 130), (5, 64, 256), (3, 7, 1000)])
def test_matmul_int_is_exact(n: int, rows: int, cols: int) -> None:
    rng = np.random.default_rng(rows * 1000 + cols)
    t = _tensor(rng, rows, cols)
    xq = rng.integers(-128, 128, size=(n, cols), dtype=np.int8)
    backend = NumpyBackend()
    got = backend.matmul_int(backend.prepare_weights(t), xq)
    # Independent reference: explicit int64 sums, one output at a time.
    want = np.array(
        [[int(np.sum(xq[i].astype(np.int64) * t.q[r].astype(np.int64))) for r in range(rows)] for i in range(n)]
    )
    assert got.dtype == np.int32 and got.shape == (n, rows)
    np.testing.assert_array_equal(got, want)


def test_matmul_int_extremes_do_not_overflow() -> None:
    cols = 4096
    t = TernaryTensor(np.stack([np.ones(cols, np.int8), -np.ones(cols, np.int8)]), np.ones(2, np.float32))
    xq = np.full((1, cols), -128, dtype=np.int8)
    np.testing.assert_array_equal(NumpyBackend().matmul_int(t, xq), [[-128 * cols, 128 * cols]])


@pytest.mark.parametrize("n", [1, 4])
def test_matmul_matches_reference_bit_for_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    w = rng.standard_normal((48, 96)).astype(np.float32)
    t = quantize_weights(w)
    x = rng.standard_normal((n, 96)).astype(np.float32)
    backend = NumpyBackend()
    got = backend.matmul(backend.prepare_weights(t), x)
    np.testing.assert_array_equal(got, ternary_linear(t, x))
    # And it is the quantized product: within activation-quantization error of float math.
    xq, a = quantize_activations(x)
    manual = (xq.astype(np.float64) @ t.q.T.astype(np.float64)) * t.scale[None, :] / a[:, None]
    np.testing.assert_allclose(got, manual, rtol=1e-6, atol=1e-6)


def test_float_ops_are_the_reference_ops() -> None:
    rng = np.random.default_rng(7)
    b = NumpyBackend()
    x = rng.standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_array_equal(b.rms_norm(x, np.ones(8, np.float32), 1e-5), ops.rms_norm(x, np.ones(8, np.float32), 1e-5))
    np.testing.assert_array_equal(b.silu(x), ops.silu(x))
    np.testing.assert_array_equal(b.softmax(x), ops.softmax(x))
    qkv = rng.standard_normal((2, 4, 8)).astype(np.float32)
    pos = np.array([3, 4])
    np.testing.assert_array_equal(b.rope(qkv, pos, 10000.0, False), ops.rope(qkv, pos, 10000.0, False))
    kv = rng.standard_normal((5, 2, 8)).astype(np.float32)
    np.testing.assert_array_equal(b.attention(qkv, kv, kv, pos), ops.attention(qkv, kv, kv, pos))


def test_capabilities_cover_every_op_and_inputs_are_checked() -> None:
    assert NumpyBackend.capabilities == frozenset(REQUIRED_OPS + OPTIONAL_OPS)
    b = NumpyBackend()
    t = _tensor(np.random.default_rng(0), 4, 8)
    with pytest.raises(TypeError, match="takes a TernaryTensor"):
        b.prepare_weights(t.q)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x must be \[n, 8\]"):
        b.matmul(t, np.zeros((2, 9), np.float32))
    with pytest.raises(TypeError, match="xq must be int8"):
        b.matmul_int(t, np.zeros((2, 8), np.int32))
    with pytest.raises(TypeError, match="not prepared by the numpy backend"):
        b.matmul(t.q, np.zeros((2, 8), np.float32))  # type: ignore[arg-type]


def test_registered_through_its_entry_point_at_priority_0() -> None:
    host = BackendHost(environ={"BITNET_DISABLE_PLUGINS": "llvm,mlx"})
    (info,) = [i for i in host.available() if i.name == "numpy"]
    assert info.priority == 0 and info.plugin == "numpy"
    assert isinstance(host.get(), NumpyBackend)  # the only one left: auto picks it


def test_silu_of_very_negative_inputs_is_its_limit_without_a_warning() -> None:
    # exp(-x) overflows to inf below about -88 in float32: the quotient is the exact limit,
    # and the suite's filterwarnings=error turns any RuntimeWarning into a failure.
    x = np.array([-1000.0, -100.0, -89.0, 0.0, 5.0], dtype=np.float32)
    y = NumpyBackend().silu(x)
    assert y.dtype == np.float32
    assert np.all(y[:3] == 0.0) and y[3] == 0.0
    assert y[4] == pytest.approx(5.0 / (1.0 + np.exp(-5.0)), rel=1e-6)
