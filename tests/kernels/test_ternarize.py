"""The quantizer's native kernels: bit-pattern histogram and the three packers, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_kernels.ternarize import FORMATS, TernarizeKernels

from bitnet_sdk.formats import codes as packers


@pytest.fixture(scope="module")
def kernels() -> TernarizeKernels:
    return TernarizeKernels.shared()


def _case(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 1 << 16, (rows, cols)).astype(np.uint16)
    raw[rows // 3] = 0  # a zero row: its blocks hold only zero codes
    raw[rows // 2, : cols // 2] = 0  # a row half zero
    table = rng.integers(0, 3, 1 << 16).astype(np.uint8)
    table[0] = 1  # bit pattern 0 (+0.0) is code 1, the ternary 0
    return raw, table


def test_histogram_counts_every_bit_pattern_and_accumulates(kernels: TernarizeKernels) -> None:
    raw, _ = _case(33, 512, 1)
    hist = np.zeros(1 << 16, np.int64)
    kernels.histogram(raw, hist)
    np.testing.assert_array_equal(hist, np.bincount(raw.reshape(-1), minlength=1 << 16))
    kernels.histogram(raw[:5], hist)
    np.testing.assert_array_equal(hist, np.bincount(np.concatenate([raw.reshape(-1), raw[:5].reshape(-1)]),
                                                    minlength=1 << 16))  # fmt: skip


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize(("rows", "cols"), [(1, 256), (7, 512), (40, 2560)])
def test_packers_are_byte_equal_to_numpys(kernels: TernarizeKernels, fmt: str, rows: int, cols: int) -> None:
    raw, table = _case(rows, cols, rows)
    scale = float(np.float16(0.0123))
    want = np.zeros(packers.code_bytes(fmt, (rows, cols)), np.uint8)
    packers.pack_rows(fmt, table[raw], scale, want)
    got = np.full_like(want, 0xAA)  # every byte must be written
    d16 = int(np.float32(scale).astype(np.float16).view(np.uint16))
    kernels.pack(fmt, raw, table, packers.TQ1_BYTE, d16, got)
    np.testing.assert_array_equal(got, want)
    codes = np.full(raw.shape, 9, dtype=np.int8)  # and with the ternary values stored on the way
    again = np.zeros_like(want)
    kernels.pack(fmt, raw, table, packers.TQ1_BYTE, d16, again, codes)
    np.testing.assert_array_equal(again, want)
    np.testing.assert_array_equal(codes, table[raw].astype(np.int8) - 1)


def test_bad_arguments_are_refused_before_native_code_runs(kernels: TernarizeKernels) -> None:
    raw, table = _case(2, 256, 0)
    out = np.zeros(packers.code_bytes("tq1_0", raw.shape), np.uint8)
    bad = table.copy()
    bad[7] = 3  # would index past the 243-entry base-3 table
    with pytest.raises(ValueError, match="codes"):
        kernels.pack("tq1_0", raw, bad, packers.TQ1_BYTE, 0, out)
    with pytest.raises(ValueError, match="out"):
        kernels.pack("tq1_0", raw, table, packers.TQ1_BYTE, 0, out[:-1])
    with pytest.raises(ValueError, match="units"):
        kernels.pack("tq2_0", raw[:, :128], table, packers.TQ1_BYTE, 0, out)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.histogram(raw[:, ::2], np.zeros(1 << 16, np.int64))
    with pytest.raises(ValueError, match="65536"):
        kernels.histogram(raw, np.zeros(10, np.int64))


def test_lookup16_maps_and_counts_non_finite_results(kernels: TernarizeKernels) -> None:
    raw, _ = _case(9, 256, 4)
    table = np.random.default_rng(5).integers(0, 1 << 16, 1 << 16).astype(np.uint16)
    got, bad = kernels.lookup16(raw, table)
    want = table[raw]
    np.testing.assert_array_equal(got, want)
    assert bad == int(((want & 0x7C00) == 0x7C00).sum()) > 0
