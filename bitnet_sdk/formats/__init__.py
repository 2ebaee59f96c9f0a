"""Packed ternary tensor formats: TQ1_0 and TQ2_0 (upstream ggml) and I2_S (bitnet.cpp).

Each format module (:mod:`~bitnet_sdk.formats.tq2_0`, :mod:`~bitnet_sdk.formats.tq1_0`,
:mod:`~bitnet_sdk.formats.i2_s`) converts a :class:`~bitnet_sdk.ternary.TernaryTensor` to the
exact bytes a GGUF file holds and back, in vectorised numpy. This package adds a dispatch by
format name (``"tq2_0" | "tq1_0" | "i2_s"``) or GGML type id (35, 34, 36; ids come from
:mod:`~bitnet_sdk.formats.constants`). Shapes are ``(rows, cols)`` in numpy order, i.e. GGUF's
``ne`` reversed; packed data is a flat uint8 array.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from bitnet_sdk.formats import i2_s, tq1_0, tq2_0
from bitnet_sdk.formats._common import ByteSource
from bitnet_sdk.formats.constants import QTYPE_IDS
from bitnet_sdk.ternary.reference import TernaryTensor

__all__ = [
    "QTYPES",
    "ByteSource",
    "i2_s",
    "nbytes",
    "pack",
    "qtype_name",
    "tq1_0",
    "tq2_0",
    "type_id",
    "unpack",
]

_MODULES: dict[str, ModuleType] = {"tq2_0": tq2_0, "tq1_0": tq1_0, "i2_s": i2_s}
_NAMES_BY_ID: dict[int, str] = {v: k for k, v in QTYPE_IDS.items()}

#: The format names this package packs and unpacks.
QTYPES: tuple[str, ...] = tuple(_MODULES)


def qtype_name(qtype: str | int) -> str:
    """Canonical name (``"tq2_0"``...) of a format given by name (any case) or GGML type id.

    Accepts ``gguf.GGMLQuantizationType`` members too (they are ints). Raises ``ValueError`` for
    anything else, naming the supported formats.
    """
    if isinstance(qtype, str):
        name = qtype.strip().lower()
        if name in _MODULES:
            return name
    elif isinstance(qtype, (int, np.integer)) and not isinstance(qtype, bool):
        if int(qtype) in _NAMES_BY_ID:
            return _NAMES_BY_ID[int(qtype)]
    supported = ", ".join(f"{n} ({QTYPE_IDS[n]})" for n in QTYPES)
    raise ValueError(f"unsupported packed ternary format {qtype!r}; supported: {supported}")


def type_id(qtype: str | int) -> int:
    """GGML type id of a format: 35 for TQ2_0, 34 for TQ1_0, 36 for I2_S (bitnet.cpp's fork)."""
    return QTYPE_IDS[qtype_name(qtype)]


def nbytes(qtype: str | int, shape: tuple[int, int]) -> int:
    """Bytes a ``(rows, cols)`` tensor occupies in the given format (``ValueError`` if invalid)."""
    return _MODULES[qtype_name(qtype)].nbytes(shape)


def pack(qtype: str | int, t: TernaryTensor) -> np.ndarray:
    """Encode ``t`` in the given format; a flat uint8 array of ``nbytes(qtype, t.shape)``."""
    return _MODULES[qtype_name(qtype)].pack(t)


def unpack(qtype: str | int, data: ByteSource, shape: tuple[int, int]) -> TernaryTensor:
    """Decode bytes of the given format into a :class:`TernaryTensor` (see each module)."""
    return _MODULES[qtype_name(qtype)].unpack(data, shape)
