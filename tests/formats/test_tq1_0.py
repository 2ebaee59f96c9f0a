"""TQ1_0 specifics: the trit layout against a scalar re-reading of ggml's C."""

from __future__ import annotations

import numpy as np
import pytest

from bitnet_sdk.formats import tq1_0
from bitnet_sdk.ternary import TernaryTensor

from ._support import assert_same_blocks, random_ternary


def _pack_trits(trits: list[int]) -> int:
    q = 0
    for t in trits:
        q = q * 3 + t
    return (q * 256 + 242) // 243  # ceiling division by 3**5


def scalar_quantize_row_tq1_0(x: list[float]) -> bytes:
    """ggml-quants.c ``quantize_row_tq1_0_ref``, element by element, for ternary-valued input."""
    out = bytearray()
    for i in range(0, len(x), 256):
        blk = x[i : i + 256]
        amax = max(abs(v) for v in blk)
        inv = 1.0 / amax if amax else 0.0
        trit = [round(v * inv) + 1 for v in blk]  # exact for ternary input
        qs = [_pack_trits([trit[m + n * 32] for n in range(5)]) for m in range(32)]
        qs += [_pack_trits([trit[160 + m + n * 16] for n in range(5)]) for m in range(16)]
        qh = [_pack_trits([trit[240 + j + m * 4] for m in range(4)] + [0]) for j in range(4)]
        out += bytes(qs + qh) + np.float16(amax).tobytes()
    return bytes(out)


def scalar_dequantize_trits(block: bytes) -> list[int]:
    """ggml-quants.c ``dequantize_row_tq1_0`` (trits only), element by element."""
    out = [0] * 256
    pow3 = [1, 3, 9, 27, 81]
    for n in range(5):
        for m in range(32):
            out[m + n * 32] = (((block[m] * pow3[n]) & 0xFF) * 3 >> 8) - 1
        for m in range(16):
            out[160 + m + n * 16] = (((block[32 + m] * pow3[n]) & 0xFF) * 3 >> 8) - 1
    for n in range(4):
        for j in range(4):
            out[240 + j + n * 4] = (((block[48 + j] * pow3[n]) & 0xFF) * 3 >> 8) - 1
    return out


@pytest.mark.parametrize("seed", range(4))
def test_pack_matches_scalar_reference(seed: int) -> None:
    t = random_ternary(np.random.default_rng(seed), 2, 512, allow_negative=True)
    expected = b"".join(
        scalar_quantize_row_tq1_0([float(v) * float(s) for v in row])
        for row, s in zip(t.q, t.scale, strict=True)
    )
    assert_same_blocks(np.frombuffer(expected, np.uint8), tq1_0.pack(t), 54, "scalar TQ1_0")


def test_every_byte_value_decodes_like_ggml() -> None:
    """Every byte value, in every qs/qh position, decodes as ggml's scalar loop does."""
    k = np.arange(256, dtype=np.uint16)[:, None]
    blocks = np.empty((256, 54), dtype=np.uint8)
    blocks[:, :52] = (k + np.arange(52, dtype=np.uint16)) % 256  # block k, byte p: (k + p) % 256
    blocks[:, 52:] = np.array([1.0], dtype="<f2").view(np.uint8)
    q, d = tq1_0.unpack_blocks(blocks, (256, 256))
    for r in range(256):
        assert q[r].tolist() == scalar_dequantize_trits(blocks[r].tobytes()), f"block {r}"
    np.testing.assert_array_equal(d, 1.0)


def test_non_canonical_bytes_decode_but_do_not_repack_identically() -> None:
    """Byte 1 is not ceil(v*256/243) for any v; it decodes to trits that repack as byte 0."""
    t = TernaryTensor.from_scalar(-np.ones((1, 256), dtype=np.int8), 1.0)
    data = tq1_0.pack(t)
    assert data[0] == 0  # all trits 0 (value -1)
    data[0] = 1
    np.testing.assert_array_equal(tq1_0.unpack(data, (1, 256)).q, t.q)
    assert tq1_0.pack(tq1_0.unpack(data, (1, 256)))[0] == 0
