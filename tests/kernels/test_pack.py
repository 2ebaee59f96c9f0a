"""The native repacking kernel writes the same bytes as the numpy reference ``pack_ternary``."""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_kernels.layout import pack_ternary
from bitnet_kernels.library import KernelLibrary


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 255), (4, 256), (5, 513), (9, 700), (16, 1024), (1030, 2304)])
def test_same_bytes_as_the_reference(lib: KernelLibrary, rows: int, cols: int) -> None:
    rng = np.random.default_rng(rows * cols)
    q = rng.integers(-1, 2, size=(rows, cols)).astype(np.int8)
    scale = rng.random(rows).astype(np.float32)
    got, want = lib.pack(q, scale), pack_ternary(q, scale)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.data, want.data)
    np.testing.assert_array_equal(got.scale, want.scale)
    assert got.data.ctypes.data % 64 == 0


def test_strided_and_read_only_inputs(lib: KernelLibrary) -> None:
    rng = np.random.default_rng(1)
    big = rng.integers(-1, 2, size=(20, 900)).astype(np.int8)
    view = big[2:15, 100:400]  # rows 900 bytes apart
    np.testing.assert_array_equal(lib.pack(view, np.ones(13, np.float32)).data,
                                  pack_ternary(view, np.ones(13, np.float32)).data)  # fmt: skip
    frozen = big.copy()
    frozen.flags.writeable = False  # like a memory-mapped file
    np.testing.assert_array_equal(lib.pack(frozen, np.ones(20, np.float32)).data,
                                  pack_ternary(frozen, np.ones(20, np.float32)).data)  # fmt: skip
    backwards = big[::-1]
    np.testing.assert_array_equal(lib.pack(backwards, np.ones(20, np.float32)).data,
                                  pack_ternary(backwards, np.ones(20, np.float32)).data)  # fmt: skip


@pytest.mark.parametrize("value", [2, -2, 127, -128])
@pytest.mark.parametrize("where", [(0, 3), (4, 299)])  # a full block, then the padded tail block
def test_non_ternary_values_are_rejected(lib: KernelLibrary, value: int, where: tuple[int, int]) -> None:
    q = np.zeros((5, 300), np.int8)
    q[where] = value
    with pytest.raises(ValueError, match="outside"):
        lib.pack(q, np.ones(5, np.float32))


def test_other_dtypes_go_through_the_reference(lib: KernelLibrary) -> None:
    q = np.array([[1, 0, -1]], dtype=np.int64)
    np.testing.assert_array_equal(lib.pack(q, np.ones(1, np.float32)).data,
                                  pack_ternary(q, np.ones(1, np.float32)).data)  # fmt: skip
    with pytest.raises(ValueError, match="outside"):
        lib.pack(np.array([[255]], dtype=np.int64), np.ones(1, np.float32))  # 255 would wrap to -1
