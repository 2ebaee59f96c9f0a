"""TQ2_0 specifics: the bit layout against a scalar re-reading of ggml's C, and code 3."""

from __future__ import annotations

import numpy as np
import pytest

from bitnet_sdk.formats import tq2_0
from bitnet_sdk.ternary import TernaryTensor

from ._support import assert_same_blocks, random_ternary


def scalar_quantize_row_tq2_0(x: list[float]) -> bytes:
    """ggml-quants.c ``quantize_row_tq2_0_ref``, element by element, for ternary-valued input."""
    out = bytearray()
    for i in range(0, len(x), 256):
        blk = x[i : i + 256]
        amax = max(abs(v) for v in blk)
        inv = 1.0 / amax if amax else 0.0
        qs = bytearray(64)
        for j in range(0, 64, 32):  # two 128-weight halves, 32 bytes each
            base = (j // 32) * 128
            for m in range(32):
                q = 0
                for n in range(4):
                    xi = round(blk[base + m + n * 32] * inv) + 1  # exact for ternary input
                    q += (xi & 3) << (2 * n)
                qs[j + m] = q
        out += qs + np.float16(amax).tobytes()
    return bytes(out)


@pytest.mark.parametrize("seed", range(4))
def test_pack_matches_scalar_reference(seed: int) -> None:
    t = random_ternary(np.random.default_rng(seed), 2, 512, allow_negative=True)
    expected = b"".join(
        scalar_quantize_row_tq2_0([float(v) * float(s) for v in row])
        for row, s in zip(t.q, t.scale, strict=True)
    )
    assert_same_blocks(np.frombuffer(expected, np.uint8), tq2_0.pack(t), 66, "scalar TQ2_0")


def test_single_weight_positions() -> None:
    """Weight 128 + 32*n + m lands in byte 32 + m, bits 2n..2n+1 (code 2 for +1)."""
    for n in range(4):
        for m in (0, 17, 31):
            q = np.zeros((1, 256), dtype=np.int8)
            q[0, 128 + 32 * n + m] = 1
            data = tq2_0.pack(TernaryTensor.from_scalar(q, 1.0))
            qs = data[:64]
            expected = np.full(64, 0b01010101, dtype=np.uint8)  # every other weight is 0 (code 1)
            expected[32 + m] = (0b01010101 & ~(3 << 2 * n)) | (2 << 2 * n)
            np.testing.assert_array_equal(qs, expected)
            assert data[64:].view("<f2")[0] == 1.0


def test_code_3_is_rejected_but_visible_in_unpack_blocks() -> None:
    data = tq2_0.pack(TernaryTensor.from_scalar(np.zeros((2, 256), dtype=np.int8), 1.0))
    data[66 + 5] |= 0b11 << 4  # row 1, byte 5, lane 2 -> weight 5 + 64 = 69
    data[66 + 64 : 66 + 66] = np.array([0.5], dtype="<f2").view(np.uint8)
    with pytest.raises(ValueError, match="code 3 at row 1, column 69"):
        tq2_0.unpack(data, (2, 256))
    q, d = tq2_0.unpack_blocks(data, (2, 256))
    assert q[1, 69] == 2 and d[1, 0] == 0.5
