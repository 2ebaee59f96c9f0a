"""The MLX backend's fused float ops against ``bitnet_sdk.backends.ops`` (MLX CPU device).

Tolerances (float32 results compared with the float32 numpy reference):

* ``rms_norm``, ``softmax``, ``silu``, ``attention``: ``rtol=1e-5, atol=1e-6``
  (a few ulps: MLX and numpy sum and exponentiate in different orders);
* ``relu2``: exact (one max and one product);
* ``rope``: ``atol = 1e-6 + 1e-7 * max_position * max|x|``. The reference
  computes angles in float64; ``mx.fast.rope`` (like llama.cpp) computes
  ``position * inv_freq`` in float32, an angle error of a few ulps of the angle.
"""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core", reason="the mlx package is not installed (pip install '.[mlx]')")

from bitnet_mlx.backend import MlxBackend  # noqa: E402
from bitnet_mlx.layers import attention_mask  # noqa: E402

from bitnet_sdk.backends import ops  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


DEVICES = ["cpu"] + (["gpu"] if mx.metal.is_available() else [])


@pytest.fixture(scope="module", params=DEVICES)
def backend(request: pytest.FixtureRequest) -> MlxBackend:
    return MlxBackend(request.param)


def _rand(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 64), (7, 256), (3, 5, 48)])
def test_rms_norm(backend: MlxBackend, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    x, w = _rand(rng, *shape, scale=4.0), _rand(rng, shape[-1])
    got = backend.rms_norm(x, w, 1e-5)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, ops.rms_norm(x, w, 1e-5), rtol=RTOL, atol=ATOL)
    tiny = np.full(shape, 1e-4, np.float32)  # eps dominates: checks where eps is added
    np.testing.assert_allclose(backend.rms_norm(tiny, w, 1e-2), ops.rms_norm(tiny, w, 1e-2), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("neox", [False, True], ids=["consecutive-pairs", "neox"])
@pytest.mark.parametrize(
    "positions", [[0], [5, 6, 7, 8], [3, 0, 17, 4], [0, 700, 4000]], ids=["first", "run", "any", "far"]
)
def test_rope_both_styles(backend: MlxBackend, neox: bool, positions: list[int]) -> None:
    rng = np.random.default_rng(len(positions))
    pos = np.array(positions)
    x = _rand(rng, len(positions), 4, 32)
    for theta in (10000.0, 500000.0):
        got = backend.rope(x, pos, theta, neox)
        want = ops.rope(x, pos, theta, neox)
        atol = 1e-6 + 1e-7 * pos.max() * np.abs(x).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=f"theta={theta}")


def test_rope_styles_differ(backend: MlxBackend) -> None:
    """Guards the traditional/neox mapping: the two styles must not coincide."""
    x = _rand(np.random.default_rng(1), 2, 2, 16)
    pos = np.array([3, 9])
    assert np.abs(backend.rope(x, pos, 10000.0, True) - backend.rope(x, pos, 10000.0, False)).max() > 0.1
    np.testing.assert_allclose(backend.rope(x, pos, 10000.0, False), ops.rope(x, pos, 10000.0, False), atol=1e-5)


@pytest.mark.parametrize(
    ("n_heads", "n_kv", "positions", "t"),
    [
        (8, 2, [0, 1, 2, 3, 4], 5),  # prompt: causal square
        (8, 2, [6], 7),  # generation step with a KV cache: no mask
        (8, 2, [4, 5, 6], 7),  # prompt continuing a cache: lower-right causal
        (4, 4, [1, 3, 6], 7),  # arbitrary positions: explicit mask; plain MHA
        (6, 1, [2, 3], 9),  # multi-query; queries not at the end of the cache
    ],
)
def test_attention_gqa_causal(
    backend: MlxBackend, n_heads: int, n_kv: int, positions: list[int], t: int
) -> None:
    rng = np.random.default_rng(t * 10 + n_heads)
    d = 32
    q, k, v = _rand(rng, len(positions), n_heads, d), _rand(rng, t, n_kv, d), _rand(rng, t, n_kv, d)
    pos = np.array(positions)
    got = backend.attention(q, k, v, pos)
    assert got.dtype == np.float32 and got.shape == q.shape
    np.testing.assert_allclose(got, ops.attention(q, k, v, pos), rtol=RTOL, atol=ATOL)


def test_attention_mask_choice() -> None:
    assert attention_mask(np.array([6]), 7) is None
    assert attention_mask(np.array([0, 1, 2]), 3) == "causal"
    assert attention_mask(np.array([4, 5, 6]), 7) == "causal"
    explicit = attention_mask(np.array([1, 3]), 5)
    assert isinstance(explicit, mx.array)
    np.testing.assert_array_equal(np.asarray(explicit), [[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]])


def test_elementwise_ops(backend: MlxBackend) -> None:
    rng = np.random.default_rng(3)
    x = _rand(rng, 5, 300, scale=6.0)
    np.testing.assert_allclose(backend.silu(x), ops.silu(x), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(backend.relu2(x), ops.relu2(x))
    for axis in (-1, 0):
        np.testing.assert_allclose(backend.softmax(x, axis), ops.softmax(x, axis), rtol=RTOL, atol=ATOL)
    big = np.array([[1000.0, 999.0, -1000.0]], np.float32)  # stable: no overflow to NaN
    np.testing.assert_allclose(backend.softmax(big), ops.softmax(big), rtol=RTOL, atol=ATOL)
