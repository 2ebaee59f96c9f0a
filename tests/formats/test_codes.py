"""The fast code packers are byte-equal to the reference ``pack`` of each format."""

from __future__ import annotations

import numpy as np
import pytest

from bitnet_sdk import formats
from bitnet_sdk.formats import codes
from bitnet_sdk.ternary import TernaryTensor

SCALES = [0.0213, 1.0, 3.0e-5, 70000.0 / 3]  # fp16 rounding, exact, subnormal fp16, large


def _codes(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Random codes in {0, 1, 2} with some all-zero (code 1) blocks and rows (never all)."""
    c = rng.integers(0, 3, size=(rows, cols)).astype(np.uint8)
    c[0, 256:] = 1
    if rows > 1:
        c[rows // 2, :256] = 1
    sparse = rng.random((rows, cols)) < 0.9
    c[-1][sparse[-1]] = 1
    return c


@pytest.mark.parametrize("qtype", formats.QTYPES)
@pytest.mark.parametrize("shape", [(1, 256), (7, 512), (33, 1024)])
@pytest.mark.parametrize("scale", SCALES)
def test_pack_rows_equals_reference_pack(qtype: str, shape: tuple[int, int], scale: float) -> None:
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    c = _codes(rng, *shape)
    scale32 = float(np.float32(scale))
    expected = formats.pack(qtype, TernaryTensor.from_scalar(c.view(np.int8) - np.int8(1), scale32))
    got = np.full(formats.nbytes(qtype, shape), 0xAB, dtype=np.uint8)
    codes.pack_rows(qtype, c, scale32, got[: codes.code_bytes(qtype, shape)])
    codes.finish(qtype, got, scale32)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("qtype", formats.QTYPES)
def test_row_chunks_pack_independently(qtype: str) -> None:
    rows, cols = 10, 512
    c = _codes(np.random.default_rng(3), rows, cols)
    whole = np.zeros(formats.nbytes(qtype, (rows, cols)), dtype=np.uint8)
    codes.pack_rows(qtype, c, 0.5, whole[: codes.code_bytes(qtype, (rows, cols))])
    pieces = np.zeros_like(whole)
    for r0, r1 in [(6, 10), (0, 3), (3, 6)]:
        codes.pack_rows(qtype, np.ascontiguousarray(c[r0:r1]), 0.5, pieces[codes.chunk_slice(qtype, cols, r0, r1)])
    np.testing.assert_array_equal(pieces, whole)
