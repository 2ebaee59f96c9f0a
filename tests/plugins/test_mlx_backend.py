"""The MLX backend's ternary math on MLX's CPU device: exact against ``bitnet_sdk.ternary``.

Integer results must equal ``ternary_matmul_int`` bit for bit, on both
accumulation paths (``mx.quantized_matmul`` for few tokens, unpack + float
matmul for more) and across the k-chunking that keeps float32 sums exact.
``matmul`` and ``quantize_activations`` use the reference's float32 operations
in the reference's order, so on the CPU they are held to bit equality too
(the contract allows float32 rounding of the rescale; Metal may use it).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core", reason="the mlx package is not installed (pip install '.[mlx]')")

from bitnet_mlx.backend import MlxBackend  # noqa: E402
from bitnet_mlx.kernels import K_CHUNK  # noqa: E402
from bitnet_mlx.packing import PackedTernary, pack_codes, unpack_codes  # noqa: E402
from bitnet_numpy import NumpyBackend  # noqa: E402

from bitnet_sdk.backends import BackendUnavailableError  # noqa: E402
from bitnet_sdk.ternary import (  # noqa: E402
    TernaryTensor,
    quantize_activations,
    quantize_weights,
    ternary_linear,
    ternary_matmul_int,
)

#: Token count above which the "unpack" configurations leave mx.quantized_matmul.
SPLIT_N = 4
#: (device, compile, qmm_max_n): MLX's CPU device on both accumulation paths, compiled
#: and eager; Metal's GPU too where it exists (a Mac).
CONFIGS = [("cpu", True, None), ("cpu", False, None), ("cpu", True, SPLIT_N), ("cpu", False, SPLIT_N)]
CONFIGS += [("gpu", True, None)] if mx.metal.is_available() else []


@pytest.fixture(
    scope="module",
    params=CONFIGS,
    ids=[f"{d}-{'compiled' if c else 'eager'}-{'qmm' if m is None else 'unpack'}" for d, c, m in CONFIGS],
)
def backend(request: pytest.FixtureRequest) -> MlxBackend:
    device, compile_, qmm_max_n = request.param
    return MlxBackend(device, compile=compile_, qmm_max_n=qmm_max_n)


def _tensor(rng: np.random.Generator, rows: int, cols: int) -> TernaryTensor:
    """Random ternary codes with a distinct scale per row."""
    q = rng.integers(-1, 2, size=(rows, cols), dtype=np.int8)
    return TernaryTensor(q, rng.uniform(0.01, 3.0, rows).astype(np.float32))


def _exact(q: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Independent int64 reference."""
    return xq.astype(np.int64) @ q.astype(np.int64).T


# In the "unpack" configurations n <= SPLIT_N takes mx.quantized_matmul, larger n the unpack path;
# cols cover < 32, not a multiple of 16/32, and each group size (32, 64, 128).
SHAPES = [
    (1, 1, 1), (1, 33, 130), (1, 3, 33), (2, 16, 31), (5, 64, 256), (3, 7, 1000),
    (SPLIT_N, 9, 96), (SPLIT_N + 1, 9, 96), (40, 17, 200), (12, 5, 64),
]


@pytest.mark.parametrize(("n", "rows", "cols"), SHAPES)
def test_matmul_int_is_exact(backend: MlxBackend, n: int, rows: int, cols: int) -> None:
    rng = np.random.default_rng(rows * 1000 + cols + n)
    t = _tensor(rng, rows, cols)
    xq = rng.integers(-128, 128, size=(n, cols), dtype=np.int8)
    got = backend.matmul_int(backend.prepare_weights(t), xq)
    assert got.dtype == np.int32 and got.shape == (n, rows)
    np.testing.assert_array_equal(got, _exact(t.q, xq))
    np.testing.assert_array_equal(got, ternary_matmul_int(t.q, xq))


def test_matmul_int_random_shapes(backend: MlxBackend) -> None:
    rng = np.random.default_rng(2024)
    for _ in range(25):
        n, rows, cols = int(rng.integers(1, 24)), int(rng.integers(1, 70)), int(rng.integers(1, 600))
        t = _tensor(rng, rows, cols)
        xq = rng.integers(-128, 128, size=(n, cols), dtype=np.int8)
        got = backend.matmul_int(backend.prepare_weights(t), xq)
        np.testing.assert_array_equal(got, _exact(t.q, xq), err_msg=f"n={n} rows={rows} cols={cols}")


@pytest.mark.parametrize("n", [1, SPLIT_N + 1])
def test_matmul_int_extremes(backend: MlxBackend, n: int) -> None:
    cols = 4096
    q = np.stack([np.ones(cols, np.int8), -np.ones(cols, np.int8), np.zeros(cols, np.int8)])
    w = backend.prepare_weights(TernaryTensor(q, np.ones(3, np.float32)))
    xq = np.full((n, cols), -128, dtype=np.int8)
    np.testing.assert_array_equal(backend.matmul_int(w, xq), np.tile([-128 * cols, 128 * cols, 0], (n, 1)))


@pytest.mark.parametrize("n", [1, SPLIT_N + 1])
def test_long_rows_are_chunked_and_stay_exact(backend: MlxBackend, n: int) -> None:
    """|acc| beyond 2**24 with odd values: float32 would round it, the int32 chunk sum must not."""
    cols = 5 * K_CHUNK + 6  # six chunks, the last one partial; even, so the sum is odd
    rng = np.random.default_rng(n)
    q = np.stack([np.ones(cols, np.int8), -np.ones(cols, np.int8), rng.integers(-1, 2, cols, dtype=np.int8)])
    xq = np.full((n, cols), 127, dtype=np.int8)
    xq[:, -1] = 126
    want = _exact(q, xq)
    assert abs(int(want[0, 0])) > 2**24 and int(want[0, 0]) % 2 == 1  # not a float32
    got = backend.matmul_int(backend.prepare_weights(TernaryTensor(q, np.ones(3, np.float32))), xq)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n", [1, 4, SPLIT_N + 3])
def test_matmul_matches_ternary_linear(backend: MlxBackend, n: int) -> None:
    rng = np.random.default_rng(n)
    w = rng.standard_normal((48, 100)).astype(np.float32)
    for t in (quantize_weights(w), _tensor(rng, 48, 100)):  # one scale; a scale per row
        x = (rng.standard_normal((n, 100)) * rng.uniform(0.01, 50, (n, 1))).astype(np.float32)
        x[0] = 0.0  # an all-zero token quantizes to zeros (EPS floor), not NaN
        got = backend.matmul(backend.prepare_weights(t), x)
        assert got.dtype == np.float32 and got.shape == (n, 48)
        if backend.device == "cpu":
            # Bit-equal: same exact accumulator, same float32 ops in the same order.
            np.testing.assert_array_equal(got, ternary_linear(t, x))
        else:  # Metal's division may differ by ulps: check against its own quantization.
            xq, a = backend.quantize_activations(x)
            want = (ternary_matmul_int(t.q, xq).astype(np.float32) * t.scale[None, :]) / a[:, None]
            np.testing.assert_allclose(got, want, rtol=2.0**-21, atol=0)


def test_quantize_activations_is_bit_identical_with_ties(backend: MlxBackend) -> None:
    # amax 127 makes a == 1, so x * a lands exactly on .5 ties: half to even.
    x = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -2.5, -127.0, 126.5]], dtype=np.float32)
    xq, a = backend.quantize_activations(x)
    np.testing.assert_array_equal(xq, [[127, 0, 2, 2, 0, -2, -127, 126]])
    rng = np.random.default_rng(5)
    x = np.concatenate([x[:, :8], np.zeros((1, 8), np.float32)])
    x = np.concatenate([x, (rng.standard_normal((6, 8)) * 10).astype(np.float32)])
    xq, a = backend.quantize_activations(x)
    want_q, want_a = quantize_activations(x)
    assert xq.dtype == np.int8 and a.dtype == np.float32
    if backend.device == "cpu":
        np.testing.assert_array_equal(xq, want_q)
        np.testing.assert_array_equal(a, want_a)
    else:  # Metal's division may be off by ulps: a code on a rounding boundary may move by one.
        np.testing.assert_allclose(a, want_a, rtol=2.0**-21, atol=0)
        assert np.abs(xq.astype(np.int16) - want_q).max() <= 1


def test_empty_batch(backend: MlxBackend) -> None:
    w = backend.prepare_weights(_tensor(np.random.default_rng(0), 3, 8))
    assert backend.matmul(w, np.zeros((0, 8), np.float32)).shape == (0, 3)
    assert backend.matmul_int(w, np.zeros((0, 8), np.int8)).dtype == np.int32


# -- weights stay packed ----------------------------------------------------------


@pytest.mark.parametrize(("rows", "cols"), [(64, 256), (7, 1000), (3, 31)])
def test_prepared_weights_stay_packed(backend: MlxBackend, rows: int, cols: int) -> None:
    t = _tensor(np.random.default_rng(rows), rows, cols)
    w = backend.prepare_weights(t)
    assert isinstance(w, PackedTernary) and w.shape == (rows, cols)
    cols_padded = -(-cols // 32) * 32
    assert w.packed.dtype == mx.uint32 and w.packed.shape == (rows, cols_padded // 16)
    assert w.packed.nbytes == rows * cols_padded // 4  # 2 bits per weight
    # Everything else is per group of >= 32 codes or per row: no expanded copy anywhere.
    assert w.scales.size == w.biases.size == rows * cols_padded // w.group_size
    assert w.nbytes <= rows * cols_padded // 4 + 8 * rows * cols_padded // 32 + 4 * rows
    if cols % 128 == 0:
        assert w.nbytes == rows * cols // 4 + 8 * rows * cols // 128 + 4 * rows  # 2.5 bits/weight
    # The codes round-trip, and MLX itself reads them as the ternary values.
    np.testing.assert_array_equal(unpack_codes(np.asarray(w.packed), cols), t.q)
    dq = mx.dequantize(w.packed, w.scales, w.biases, group_size=w.group_size, bits=2)
    np.testing.assert_array_equal(np.asarray(dq)[:, :cols], t.q.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(dq)[:, cols:], 0.0)  # padding is weight 0


def test_pack_codes_layout_is_little_end_first() -> None:
    q = np.array([[1, 0, -1] + [0] * 29], dtype=np.int8)  # codes 2, 1, 0, then 1s
    word = int(pack_codes(q)[0, 0])
    assert word & 0b111111 == 0b00_01_10
    assert (word >> 6) == int("01" * 13, 2)


def test_bad_inputs_are_rejected(backend: MlxBackend) -> None:
    t = _tensor(np.random.default_rng(0), 4, 8)
    with pytest.raises(TypeError, match="takes a TernaryTensor"):
        backend.prepare_weights(t.q)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only -1, 0 and 1"):
        backend.prepare_weights(TernaryTensor(np.full((2, 4), 2, np.int8), np.ones(2, np.float32)))
    w = backend.prepare_weights(t)
    with pytest.raises(ValueError, match=r"x must be \[n, 8\]"):
        backend.matmul(w, np.zeros((2, 9), np.float32))
    with pytest.raises(TypeError, match="xq must be int8"):
        backend.matmul_int(w, np.zeros((2, 8), np.int32))
    with pytest.raises(TypeError, match="not prepared by the mlx backend"):
        backend.matmul(NumpyBackend().prepare_weights(t), np.zeros((2, 8), np.float32))
    with pytest.raises(BackendUnavailableError, match="unknown device 'tpu'"):
        MlxBackend("tpu")


@pytest.mark.skipif(mx.metal.is_available(), reason="checks the error raised where Metal is absent")
def test_gpu_device_needs_metal() -> None:
    with pytest.raises(BackendUnavailableError, match="needs Metal"):
        MlxBackend("gpu")


def test_concurrent_calls_are_serialized_and_correct() -> None:
    backend = MlxBackend("cpu")
    rng = np.random.default_rng(11)
    t = _tensor(rng, 32, 200)
    w = backend.prepare_weights(t)
    inputs = [rng.standard_normal((1 + i % 3, 200)).astype(np.float32) for i in range(16)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = backend.matmul(w, inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i, x in enumerate(inputs):
        np.testing.assert_array_equal(results[i], ternary_linear(t, x))
