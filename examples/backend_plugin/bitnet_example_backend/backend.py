"""A backend that stores ternary weights 2 bits per weight and counts its calls.

Layout: each weight code ``q + 1`` (0, 1 or 2) takes two bits, four codes per
byte, lowest bits first, along the row; rows are padded with zeros (code 1 =
weight 0 after decoding, but padding is cut off before use). A 4096 x 4096
matrix takes 4 MiB instead of 16 MiB as int8. The matmul decodes each row block
and accumulates exactly in int32, so ``matmul_int`` equals the reference bit
for bit and ``matmul`` applies the same float32 rescale as
``bitnet_sdk.ternary.ternary_linear``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from bitnet_sdk.backends import Backend
from bitnet_sdk.ternary import TernaryTensor

__all__ = ["PackedBackend", "PackedWeights", "pack", "unpack"]

_SHIFTS = np.array([0, 2, 4, 6], dtype=np.uint8)


@dataclass(frozen=True)
class PackedWeights:
    """``codes [rows, ceil(cols / 4)]`` uint8, ``scale [rows]`` float32, logical ``shape``."""

    codes: np.ndarray
    scale: np.ndarray
    shape: tuple[int, int]


def pack(t: TernaryTensor) -> PackedWeights:
    """Pack a ternary tensor's int8 codes into 2-bit fields, four per byte."""
    rows, cols = t.shape
    padded = np.zeros((rows, -(-cols // 4) * 4), dtype=np.uint8)
    padded[:, :cols] = (t.q + 1).astype(np.uint8)
    groups = padded.reshape(rows, -1, 4)
    codes = np.bitwise_or.reduce(groups << _SHIFTS, axis=2).astype(np.uint8)
    return PackedWeights(codes, t.scale.copy(), (rows, cols))


def unpack(w: PackedWeights) -> np.ndarray:
    """The int8 ternary matrix ``[rows, cols]`` back from its packed form."""
    fields = (w.codes[:, :, None] >> _SHIFTS) & np.uint8(3)
    q = fields.reshape(w.shape[0], -1)[:, : w.shape[1]].astype(np.int8) - np.int8(1)
    return q


class PackedBackend(Backend):
    """Example plugin backend: 2-bit packed weights, exact int32 numpy matmul."""

    name = "example"
    capabilities = frozenset({"prepare_weights", "matmul", "matmul_int"})

    def __init__(self, device: str = "cpu", variant: str = "2bit") -> None:
        super().__init__(device, variant)
        #: How often each op ran: handy to see the runtime really uses this backend.
        self.calls: Counter[str] = Counter()

    def prepare_weights(self, t: TernaryTensor) -> PackedWeights:
        self.calls["prepare_weights"] += 1
        return pack(t)

    def matmul_int(self, w: PackedWeights, xq: np.ndarray) -> np.ndarray:
        self.calls["matmul_int"] += 1
        if xq.dtype != np.int8 or xq.ndim != 2 or xq.shape[1] != w.shape[1]:
            raise ValueError(f"xq must be int8 [n, {w.shape[1]}], got {xq.dtype} {xq.shape}")
        return xq.astype(np.int32) @ unpack(w).astype(np.int32).T

    def matmul(self, w: PackedWeights, x: np.ndarray) -> np.ndarray:
        self.calls["matmul"] += 1
        xq, a = self.quantize_activations(x)
        acc = self.matmul_int(w, xq)
        return (acc.astype(np.float32) * w.scale[None, :]) / a[:, None]
