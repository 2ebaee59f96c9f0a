"""Packed ternary tensor formats: TQ1_0 and TQ2_0 (upstream ggml) and I2_S (bitnet.cpp).

Each format module (:mod:`~bitnet_sdk.formats.tq2_0`, :mod:`~bitnet_sdk.formats.tq1_0`,
:mod:`~bitnet_sdk.formats.i2_s`) converts a :class:`~bitnet_sdk.ternary.TernaryTensor` to the
exact bytes a GGUF file holds and back, in vectorised numpy. Each declares its facts once as
``FORMAT`` (a :class:`~bitnet_sdk.formats.registry.PackedFormat`: name, GGML type id, block
geometry, file type); :data:`FORMATS` collects them, and this package dispatches by format
name (``"tq2_0" | "tq1_0" | "i2_s"``) or GGML type id (35, 34, 36). Shapes are ``(rows, cols)`` in numpy order, i.e. GGUF's
``ne`` reversed; packed data is a flat uint8 array.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from bitnet_sdk.formats import i2_s, tq1_0, tq2_0
from bitnet_sdk.formats._common import ByteSource
from bitnet_sdk.formats.registry import PackedFormat
from bitnet_sdk.ternary.reference import TernaryTensor

__all__ = [
    "FORMATS",
    "QTYPES",
    "QTYPE_IDS",
    "ByteSource",
    "PackedFormat",
    "by_type_id",
    "i2_s",
    "nbytes",
    "pack",
    "qtype_name",
    "tq1_0",
    "tq2_0",
    "type_id",
    "unpack",
]

#: The format modules, in the order formats are listed (the default first). A new format's
#: module goes here, and nowhere else in the code.
_MODULES: dict[str, ModuleType] = {m.FORMAT.name: m for m in (tq2_0, tq1_0, i2_s)}

#: Every packed format this package packs and unpacks, by name.
FORMATS: dict[str, PackedFormat] = {name: m.FORMAT for name, m in _MODULES.items()}
#: The format names.
QTYPES: tuple[str, ...] = tuple(FORMATS)
#: Format name -> GGML type id.
QTYPE_IDS: dict[str, int] = {name: f.type_id for name, f in FORMATS.items()}
_BY_ID: dict[int, PackedFormat] = {f.type_id: f for f in FORMATS.values()}


def by_type_id(ggml_type: int) -> PackedFormat | None:
    """The packed format of a GGML tensor type id, or None when it is not one of ours."""
    return _BY_ID.get(int(ggml_type))


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
        if int(qtype) in _BY_ID:
            return _BY_ID[int(qtype)].name
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
