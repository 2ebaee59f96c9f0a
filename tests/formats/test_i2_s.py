"""I2_S against plain-loop re-implementations of bitnet.cpp's C, and round trips."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitnet_sdk.formats import i2_s
from bitnet_sdk.ternary import TernaryTensor
from bitnet_sdk.ternary import dequantize as ternary_values

from ._support import assert_same_blocks, assert_tensors_equal, from_params, tensor_params

QK_I2_S = 128


def c_quantize_i2_s(src: list[float], nrow: int, n_per_row: int) -> bytes:
    """microsoft/BitNet src/ggml-bitnet-mad.cpp ``quantize_i2_s``, x86 branch, line by line.

    The C leaves the 28 bytes after the scale uninitialised; this writes zeros there.
    """
    n = nrow * n_per_row
    i2_scale = 0.0
    for v in src:
        i2_scale = max(i2_scale, abs(v))
    q8 = [0] * n
    for i in range(n):
        if abs(src[i]) < 1e-6:
            q8[i] = 1
            continue
        q8[i] = 2 if src[i] * i2_scale > 0 else 0
    dst = bytearray(n // 4 + 32)
    for i in range(n // QK_I2_S):
        for j in range(QK_I2_S):
            group_idx = j // 32
            group_pos = j % 32
            dst[i * 32 + group_pos] |= (q8[i * QK_I2_S + j] << (6 - 2 * group_idx)) & 0xFF
    dst[n // 4 : n // 4 + 4] = struct.pack("<f", i2_scale)
    return bytes(dst)


def c_dequantize_row_i2_s(x: bytes, n: int) -> list[float]:
    """The fork's ggml-quants.c ``dequantize_row_i2_s``, line by line (scale read after codes)."""
    map2bit = [-1.0, 0.0, 1.0, 0.0]
    (i2_scale,) = struct.unpack_from("<f", x, n // 4)
    y = [0.0] * n
    done = 0
    off = 0
    while done < n:
        blk_e = min(128, n - done)
        cols = [max(0, min(32, blk_e - 32 * g)) for g in range(4)]
        for gp in range(32):
            b = x[off + gp]
            for g in range(4):
                if gp < cols[g]:
                    y[done + g * 32 + gp] = i2_scale * map2bit[(b >> (6 - 2 * g)) & 3]
        off += 32
        done += blk_e
    return y


def float_source(t: TernaryTensor) -> list[float]:
    """The float32 weights ``t`` stands for, as Python floats (what llama-quantize is fed)."""
    return [float(v) for v in ternary_values(t).reshape(-1)]


small_shapes = st.tuples(st.integers(1, 4), st.sampled_from([128, 256, 384]))


@settings(max_examples=30, deadline=None)
@given(shape=small_shapes, seed=st.integers(0, 2**32 - 1), negative=st.booleans())
def test_pack_matches_c_quantize_i2_s(shape, seed, negative) -> None:
    rng = np.random.default_rng(seed)
    q = rng.integers(-1, 2, size=shape, dtype=np.int8)
    scale = np.float32(rng.uniform(1e-3, 4.0) * (-1 if negative else 1))
    t = TernaryTensor.from_scalar(q, scale)
    expected = c_quantize_i2_s(float_source(t), *shape)
    assert_same_blocks(np.frombuffer(expected, np.uint8), i2_s.pack(t), 32, "I2_S")


@settings(max_examples=30, deadline=None)
@given(shape=small_shapes, seed=st.integers(0, 2**32 - 1))
def test_unpack_matches_c_dequantize_row_i2_s(shape, seed) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, size=shape[0] * shape[1] // 4 * 4, dtype=np.uint8)
    packed = np.bitwise_or.reduce(codes.reshape(-1, 4) << np.array([6, 4, 2, 0], np.uint8), 1)
    scale = struct.pack("<f", float(np.float32(rng.uniform(-3, 3))))
    data = packed.astype(np.uint8).tobytes() + scale + bytes(rng.integers(0, 256, 28).tolist())
    n = shape[0] * shape[1]
    expected = np.array(c_dequantize_row_i2_s(data, n), dtype=np.float32).reshape(shape)
    np.testing.assert_array_equal(ternary_values(i2_s.unpack(data, shape)), expected)


@settings(max_examples=40, deadline=None)
@given(params=tensor_params(block=128, max_blocks=6))
def test_unpack_pack_round_trip(params) -> None:
    t = from_params(params | {"per_row_scale": False}, block=128)
    back = i2_s.unpack(i2_s.pack(t), t.shape)
    if not t.q.any():  # nothing non-zero: the file's scale is 0, as quantize_i2_s writes
        t = TernaryTensor.from_scalar(t.q, 0.0)
    assert_tensors_equal(t, back)


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 64), st.integers(1, 6)), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip_on_valid_bytes(shape, seed) -> None:
    rows, cols = shape[0], shape[1] * 128
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, size=rows * cols, dtype=np.uint8)
    packed = np.bitwise_or.reduce(codes.reshape(-1, 4) << np.array([6, 4, 2, 0], np.uint8), 1)
    scale = np.array([rng.uniform(0.01, 3)], dtype="<f4").view(np.uint8)
    data = np.concatenate([packed.astype(np.uint8), scale, np.zeros(28, np.uint8)])
    assert_same_blocks(data, i2_s.pack(i2_s.unpack(data, (rows, cols))), 32, "repack")


@pytest.mark.parametrize("fill", [0, 1, -1])
@pytest.mark.parametrize("shape", [(1, 128), (3, 512)])
def test_uniform_tensors(fill: int, shape: tuple[int, int]) -> None:
    t = TernaryTensor.from_scalar(np.full(shape, fill, dtype=np.int8), 0.5)
    data = i2_s.pack(t)
    expected = c_quantize_i2_s(float_source(t), *shape)
    assert_same_blocks(np.frombuffer(expected, np.uint8), data, 32, f"all {fill}")
    assert i2_s.nbytes(shape) == data.size == shape[0] * shape[1] // 4 + 32
    back = i2_s.unpack(data, shape)
    np.testing.assert_array_equal(back.q, fill)
    np.testing.assert_array_equal(back.scale, np.float32(0.5 if fill else 0.0))


def test_single_weight_positions() -> None:
    """Weight 128*b + 32*g + j sits in byte 32*b + j, bits (6-2g)..(7-2g)."""
    for g in range(4):
        for j in (0, 9, 31):
            q = np.zeros((1, 256), dtype=np.int8)
            q[0, 128 + 32 * g + j] = -1
            data = i2_s.pack(TernaryTensor.from_scalar(q, 1.0))
            expected = np.full(64, 0b01010101, dtype=np.uint8)
            expected[32 + j] &= ~(3 << (6 - 2 * g)) & 0xFF  # code 0 for -1
            np.testing.assert_array_equal(data[:64], expected)
            assert data[64:68].view("<f4")[0] == 1.0 and not data[68:].any()


def test_rows_must_share_one_scale() -> None:
    q = np.ones((3, 128), dtype=np.int8)
    with pytest.raises(ValueError, match=r"one scale per tensor.*row 2"):
        i2_s.pack(TernaryTensor(q, np.array([0.5, 0.5, 0.25], dtype=np.float32)))


def test_zero_rows_and_signs_do_not_break_the_single_scale() -> None:
    q = np.ones((4, 128), dtype=np.int8)
    q[1] = 0
    t = TernaryTensor(q, np.array([0.5, 9.0, -0.5, 0.0], dtype=np.float32))
    assert i2_s.tensor_scale(t) == np.float32(0.5)
    back = i2_s.unpack(i2_s.pack(t), t.shape)
    np.testing.assert_array_equal(ternary_values(back), ternary_values(t))
    np.testing.assert_array_equal(back.q[:, 0], [1, 0, -1, 0])


def test_negative_stored_scale_folds_into_codes() -> None:
    data = i2_s.pack(TernaryTensor.from_scalar(np.ones((1, 128), dtype=np.int8), 1.0))
    data[32:36] = np.array([-2.0], dtype="<f4").view(np.uint8)
    back = i2_s.unpack(data, (1, 128))
    assert back.scale[0] == 2.0 and (back.q == -1).all()


def test_padding_after_the_scale_is_ignored() -> None:
    t = TernaryTensor.from_scalar(np.ones((1, 128), dtype=np.int8), 0.75)
    data = i2_s.pack(t)
    data[36:] = 0xAB  # llama-quantize leaves these bytes uninitialised
    assert_tensors_equal(t, i2_s.unpack(data, (1, 128)))


def test_code_3_and_bad_scales_are_rejected() -> None:
    data = i2_s.pack(TernaryTensor.from_scalar(np.zeros((2, 128), dtype=np.int8), 1.0))
    data[32 + 4] |= 0b11 << 2  # row 1, byte 4, group 2 -> column 68
    with pytest.raises(ValueError, match="code 3 at row 1, column 68"):
        i2_s.unpack(data, (2, 128))
    q, _ = i2_s.unpack_raw(data, (2, 128))
    assert q[1, 68] == 2
    data[32 + 4] = 0b01010101
    data[64:68] = np.array([np.nan], dtype="<f4").view(np.uint8)
    with pytest.raises(ValueError, match="not finite"):
        i2_s.unpack(data, (2, 128))


@pytest.mark.parametrize("shape", [(2, 64), (1, 200), (0, 128), (128,)])
def test_bad_shapes_are_rejected(shape) -> None:
    with pytest.raises(ValueError, match=r"multiple of 128|positive|\(rows, cols\)"):
        i2_s.nbytes(shape)


def test_wrong_length_and_non_ternary_are_rejected() -> None:
    with pytest.raises(ValueError, match="expected 64 bytes for this shape, got 32"):
        i2_s.unpack(np.zeros(32, dtype=np.uint8), (1, 128))
    with pytest.raises(ValueError, match="only -1, 0 and 1"):
        i2_s.pack(TernaryTensor.from_scalar(np.full((1, 128), 2, dtype=np.int8), 1.0))
    with pytest.raises(ValueError, match="finite"):
        i2_s.pack(TernaryTensor.from_scalar(np.ones((1, 128), dtype=np.int8), np.inf))
