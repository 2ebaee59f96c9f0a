"""The packed weight layout: documented bit positions, padding, round trip, alignment."""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_kernels.layout import (
    BLOCK,
    BLOCK_BYTES,
    ROW_GROUP,
    aligned_empty,
    pack_ternary,
    padded,
    unpack_ternary,
)


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 255), (4, 256), (9, 700), (16, 1024)])
def test_round_trip(rows: int, cols: int) -> None:
    q = np.random.default_rng(rows + cols).integers(-1, 2, size=(rows, cols)).astype(np.int8)
    p = pack_ternary(q, np.ones(rows, np.float32))
    assert p.shape == (rows, cols)
    assert p.data.size == padded(rows, ROW_GROUP) * padded(cols, BLOCK) // 4 == p.nbytes
    np.testing.assert_array_equal(unpack_ternary(p), q)


def test_bit_positions_follow_the_documented_layout() -> None:
    """Byte ``j`` of row ``r``'s block ``b`` holds ``q[r, 256b + j + 64s] + 1`` in bits ``2s``."""
    rows, cols = 6, 512
    rng = np.random.default_rng(0)
    q = rng.integers(-1, 2, size=(rows, cols)).astype(np.int8)
    data = pack_ternary(q, np.ones(rows, np.float32)).data
    nblocks = cols // BLOCK
    for r, b, j, s in [(0, 0, 0, 0), (1, 0, 5, 3), (3, 1, 63, 2), (4, 1, 17, 1), (5, 0, 40, 3)]:
        offset = ((r // ROW_GROUP) * nblocks + b) * ROW_GROUP * BLOCK_BYTES + (r % ROW_GROUP) * BLOCK_BYTES + j
        assert (int(data[offset]) >> (2 * s)) & 3 == q[r, BLOCK * b + j + 64 * s] + 1


def test_padding_is_zero_weight_and_zero_scale() -> None:
    p = pack_ternary(np.full((3, 10), -1, np.int8), np.full(3, 2.0, np.float32))
    assert p.rows_padded == 4 and p.cols_padded == 256 and p.nblocks == 1
    unpacked = p.data.reshape(1, 1, 4, 64)
    assert np.all(unpacked[0, 0, 3] == 0b01010101)  # padding row: q = 0 everywhere
    assert list(p.scale) == [2.0, 2.0, 2.0, 0.0]


def test_buffers_are_64_byte_aligned() -> None:
    p = pack_ternary(np.zeros((5, 300), np.int8), np.ones(5, np.float32))
    assert p.data.ctypes.data % 64 == 0 and p.scale.ctypes.data % 64 == 0
    for shape in [(1,), (3, 7), (100,)]:
        assert aligned_empty(shape, np.float32).ctypes.data % 64 == 0


def test_rejects_non_ternary_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="outside"):
        pack_ternary(np.array([[2, 0]], np.int8), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="2-D"):
        pack_ternary(np.zeros(4, np.int8), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="empty"):
        pack_ternary(np.zeros((0, 4), np.int8), np.ones(0, np.float32))
