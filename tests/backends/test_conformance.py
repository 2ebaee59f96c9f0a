"""Every backend installed here against the reference: ``matmul_int`` exact, ``matmul`` close.

Backends are discovered from entry points at collection time, so a new plugin
(llvm, mlx, third party) is held to the contract as soon as it registers.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitnet_sdk.backends import Backend, BackendHost
from bitnet_sdk.ternary import (
    TernaryTensor,
    quantize_activations,
    ternary_linear,
    ternary_matmul_int,
)

_HOST = BackendHost(environ={})
NAMES = [i.name for i in _HOST.available() if i.usable("cpu")]
INT_NAMES = [i.name for i in _HOST.available() if i.usable("cpu", "matmul_int")]
#: Shapes that cross typical block sizes (32, 128, 256) and leave remainders.
SHAPES = [(1, 1, 1), (1, 32, 256), (3, 17, 300), (8, 64, 1024), (2, 5, 4099)]


def _backend(name: str) -> Backend:
    return _HOST.get(name, "cpu")


def _case(n: int, rows: int, cols: int) -> tuple[TernaryTensor, np.ndarray]:
    rng = np.random.default_rng(n * 7919 + rows * 31 + cols)
    q = rng.integers(-1, 2, size=(rows, cols), dtype=np.int8)
    q[:, : cols // 3][rng.random((rows, cols // 3)) < 0.5] = 0  # sparse stretches
    t = TernaryTensor(q, rng.uniform(0.01, 3.0, rows).astype(np.float32))
    x = (rng.standard_normal((n, cols)) * rng.uniform(0.1, 10.0, (n, 1))).astype(np.float32)
    return t, x


def test_the_reference_backend_is_among_them() -> None:
    assert "numpy" in NAMES and "numpy" in INT_NAMES


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", INT_NAMES)
def test_matmul_int_is_exact(name: str, shape: tuple[int, int, int]) -> None:
    backend = _backend(name)
    t, x = _case(*shape)
    xq, _ = quantize_activations(x)
    xq[0, 0] = -128  # the int8 extreme
    got = np.asarray(backend.matmul_int(backend.prepare_weights(t), xq))
    np.testing.assert_array_equal(got, ternary_matmul_int(t.q, xq), err_msg=f"{name} {shape}")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", NAMES)
def test_matmul_matches_reference(name: str, shape: tuple[int, int, int]) -> None:
    backend = _backend(name)
    t, x = _case(*shape)
    w = backend.prepare_weights(t)
    assert tuple(w.shape) == t.shape
    got = np.asarray(backend.matmul(w, x))
    want = ternary_linear(t, x)
    assert got.shape == want.shape and got.dtype == np.float32
    # Same int32 accumulations; only the float32 rescale may round differently.
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float32).eps, atol=0, err_msg=f"{name} {shape}")
