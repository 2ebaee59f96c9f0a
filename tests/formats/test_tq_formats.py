"""TQ1_0 and TQ2_0 against the ``gguf`` package's own quantizer and dequantizer, and round trips."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize
from hypothesis import given, settings
from hypothesis import strategies as st

from bitnet_sdk.formats import tq1_0, tq2_0
from bitnet_sdk.ternary import TernaryTensor
from bitnet_sdk.ternary import dequantize as ternary_values

from ._support import (
    assert_same_blocks,
    assert_tensors_equal,
    from_params,
    random_ternary,
    tensor_params,
)

FORMATS = [
    pytest.param(tq2_0, gguf.GGMLQuantizationType.TQ2_0, id="tq2_0"),
    pytest.param(tq1_0, gguf.GGMLQuantizationType.TQ1_0, id="tq1_0"),
]
PROPERTY = settings(max_examples=40, deadline=None)


def gguf_bytes(t: TernaryTensor, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """What llama.cpp's Python quantizer writes for the float matrix ``t`` stands for."""
    return quantize(ternary_values(t), qtype)


def block_bytes(qtype: gguf.GGMLQuantizationType) -> int:
    return gguf.GGML_QUANT_SIZES[qtype][1]


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
@PROPERTY
@given(params=tensor_params(), negative=st.booleans())
def test_pack_matches_gguf_quantize(fmt, qtype, params, negative) -> None:
    t = from_params(params, allow_negative=negative)
    assert_same_blocks(gguf_bytes(t, qtype), fmt.pack(t), block_bytes(qtype), qtype.name)


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
@PROPERTY
@given(params=tensor_params())
def test_gguf_dequantize_of_our_bytes_is_our_values(fmt, qtype, params) -> None:
    t = from_params(params)
    rows = t.shape[0]
    ours = fmt.pack(t)
    theirs = dequantize(ours.reshape(rows, -1), qtype)
    expected = t.q * t.scale.astype(np.float16).astype(np.float32)[:, None]
    np.testing.assert_array_equal(theirs, expected)
    np.testing.assert_array_equal(ternary_values(fmt.unpack(ours, t.shape)), theirs)


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
@PROPERTY
@given(params=tensor_params())
def test_unpack_pack_round_trip(fmt, qtype, params) -> None:
    t = from_params(params, fp16_scales=True)
    back = fmt.unpack(fmt.pack(t), t.shape)
    # Rows that are all zero carry no scale in the bytes: they get the common scale, if any.
    zero_rows = ~np.any(t.q != 0, axis=1)
    if zero_rows.any():
        live = np.unique(t.scale[~zero_rows])
        fill = live[0] if live.size == 1 else np.float32(0)
        t = TernaryTensor(t.q, np.where(zero_rows, fill, t.scale).astype(np.float32))
    assert_tensors_equal(t, back)


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
@PROPERTY
@given(params=tensor_params())
def test_pack_unpack_round_trip_on_gguf_bytes(fmt, qtype, params) -> None:
    t = from_params(params, allow_negative=True)
    data = gguf_bytes(t, qtype)
    assert_same_blocks(data, fmt.pack(fmt.unpack(data, t.shape)), block_bytes(qtype), "repack")


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 16), n_blocks=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_unpack_blocks_reads_any_gguf_data(fmt, qtype, rows, n_blocks, seed) -> None:
    """Float input with per-block absmax scales: unpack_blocks gives gguf's exact values."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(rows, 256 * n_blocks)).astype(np.float32)
    data = quantize(w, qtype)
    q, d = fmt.unpack_blocks(data, w.shape)
    assert d.shape == (rows, n_blocks)
    np.testing.assert_array_equal(
        d, np.abs(w).reshape(rows, n_blocks, 256).max(axis=2).astype(np.float16)
    )
    values = (q.reshape(rows, n_blocks, 256) * d[:, :, None]).reshape(w.shape)
    np.testing.assert_array_equal(values, dequantize(data, qtype))


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
def test_unpack_rejects_mixed_block_scales_in_a_row(fmt, qtype) -> None:
    w = np.ones((2, 512), dtype=np.float32)
    w[1, 256:] = 0.5  # row 1: blocks with scales 1.0 and 0.5
    with pytest.raises(ValueError, match=r"row 1 mixes block scales.*unpack_blocks"):
        fmt.unpack(quantize(w, qtype), w.shape)


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
@pytest.mark.parametrize("fill", [0, 1, -1])
@pytest.mark.parametrize("shape", [(1, 256), (5, 768)])
def test_uniform_tensors(fmt, qtype, fill, shape) -> None:
    t = TernaryTensor.from_scalar(np.full(shape, fill, dtype=np.int8), 0.375)
    data = fmt.pack(t)
    assert_same_blocks(gguf_bytes(t, qtype), data, block_bytes(qtype), f"all {fill}")
    back = fmt.unpack(data, shape)
    np.testing.assert_array_equal(back.q, t.q)
    # An all-zero tensor stores no scale at all (every block's d is 0).
    np.testing.assert_array_equal(back.scale, np.float32(0.375 if fill else 0.0))


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
def test_zero_rows_take_the_common_scale_and_zero_scale_rows_are_zeros(fmt, qtype) -> None:
    rng = np.random.default_rng(7)
    q = rng.integers(-1, 2, size=(4, 256), dtype=np.int8)
    q[1] = 0
    t = TernaryTensor(q, np.array([0.25, 0.25, 0.0, 0.25], dtype=np.float32))
    data = fmt.pack(t)
    assert_same_blocks(gguf_bytes(t, qtype), data, block_bytes(qtype), "zero rows")
    back = fmt.unpack(data, t.shape)
    np.testing.assert_array_equal(back.scale, np.float32(0.25))
    np.testing.assert_array_equal(back.q[2], 0)  # scale 0: the row's values are all zero
    np.testing.assert_array_equal(back.q[[0, 3]], q[[0, 3]])


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
def test_negative_scale_folds_into_codes(fmt, qtype) -> None:
    q = np.tile(np.array([1, -1, 0, 1], dtype=np.int8), (2, 64))
    t = TernaryTensor(q, np.array([-0.5, 0.5], dtype=np.float32))
    back = fmt.unpack(fmt.pack(t), t.shape)
    np.testing.assert_array_equal(back.scale, np.float32(0.5))
    np.testing.assert_array_equal(back.q, q * np.array([[-1], [1]], dtype=np.int8))
    np.testing.assert_array_equal(ternary_values(back), ternary_values(t))


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
def test_accepts_bytes_memoryview_and_gguf_shaped_arrays(fmt, qtype) -> None:
    t = random_ternary(np.random.default_rng(3), 3, 512)
    data = fmt.pack(t)
    expected = fmt.unpack(data, t.shape)
    for source in (data.tobytes(), memoryview(data.tobytes()), data.reshape(3, -1)):
        assert_tensors_equal(expected, fmt.unpack(source, t.shape))


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
@pytest.mark.parametrize("shape", [(2, 255), (2, 100), (1, 384), (0, 256), (256,)])
def test_bad_shapes_are_rejected(fmt, qtype, shape) -> None:
    with pytest.raises(ValueError, match=r"multiple of 256|positive|\(rows, cols\)"):
        fmt.nbytes(shape)
    with pytest.raises(ValueError):
        fmt.unpack(np.zeros(64, dtype=np.uint8), shape)


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
def test_pack_rejects_bad_columns(fmt, qtype) -> None:
    with pytest.raises(ValueError, match="multiple of 256"):
        fmt.pack(TernaryTensor.from_scalar(np.zeros((2, 128), dtype=np.int8), 1.0))


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
@pytest.mark.parametrize("delta", [-1, 1, -block_bytes(gguf.GGMLQuantizationType.TQ1_0)])
def test_wrong_byte_length_is_rejected(fmt, qtype, delta) -> None:
    size = fmt.nbytes((2, 256)) + delta
    with pytest.raises(ValueError, match=rf"expected {fmt.nbytes((2, 256))} bytes.*got {size}"):
        fmt.unpack(np.zeros(size, dtype=np.uint8), (2, 256))


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
def test_wrong_dtype_is_rejected(fmt, qtype) -> None:
    with pytest.raises(ValueError, match="uint8"):
        fmt.unpack(np.zeros(fmt.nbytes((1, 256)) // 2, dtype=np.float16), (1, 256))


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
def test_pack_rejects_non_ternary_and_bad_scales(fmt, qtype) -> None:
    q = np.ones((1, 256), dtype=np.int8)
    with pytest.raises(ValueError, match="only -1, 0 and 1"):
        fmt.pack(TernaryTensor.from_scalar(q * 2, 1.0))
    for bad in (np.inf, np.nan):
        with pytest.raises(ValueError, match="finite"):
            fmt.pack(TernaryTensor.from_scalar(q, bad))
    with pytest.raises(ValueError, match="fp16"):
        fmt.pack(TernaryTensor.from_scalar(q, 70000.0))
    # The largest fp16 value is still fine.
    assert fmt.unpack(fmt.pack(TernaryTensor.from_scalar(q, 65504.0)), q.shape).scale[0] == 65504


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
def test_unpack_rejects_non_finite_block_scale(fmt, qtype) -> None:
    data = fmt.pack(TernaryTensor.from_scalar(np.ones((2, 256), dtype=np.int8), 1.0))
    data[-2:] = np.array([np.inf], dtype="<f2").view(np.uint8)  # last block's d
    with pytest.raises(ValueError, match="block 0 of row 1 has a non-finite scale"):
        fmt.unpack(data, (2, 256))
    _, d = fmt.unpack_blocks(data, (2, 256))
    assert np.isinf(d[1, 0]) and d[0, 0] == 1


@pytest.mark.parametrize(("fmt", "qtype"), FORMATS)
@pytest.mark.parametrize("scale", [1e-30, 1e-9, 3e-8, 6.1e-5, 0.1, 1000.5, 65519.0])
def test_extreme_scales_match_gguf(fmt, qtype, scale) -> None:
    """Scales that are fp16 subnormal, underflow to 0, or round to fp16's maximum."""
    t = random_ternary(np.random.default_rng(5), 2, 512, per_row_scale=False)
    t = TernaryTensor(t.q, np.full(2, scale, dtype=np.float32))
    data = fmt.pack(t)
    assert_same_blocks(gguf_bytes(t, qtype), data, block_bytes(qtype), f"scale {scale}")
    np.testing.assert_array_equal(
        ternary_values(fmt.unpack(data, t.shape)), dequantize(data.reshape(2, -1), qtype)
    )
