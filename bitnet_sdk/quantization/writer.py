"""Writing a GGUF file safely, one tensor at a time, and encoding ternary projections.

:class:`AtomicGGUFWriter` streams a GGUF file through ``gguf.GGUFWriter`` (the ``gguf`` package
writes header, key/values and tensor directory exactly as llama.cpp reads them) into a temporary
file *in the destination's folder*, and publishes it with one ``os.replace`` only after the caller
has re-validated it. Any failure, cancellation or exception before that removes the temporary
file, so a destination path either holds the previous file or the complete new one, never half of
one. The directory is planned first (name, shape, type, size of every tensor) so tensor data can
then be written as each tensor is produced: peak memory stays near one tensor.

:func:`encode_projection` turns a :class:`~bitnet_sdk.ternary.TernaryTensor` into the bytes of a
packed format. TQ1_0/TQ2_0 hold fp16 block scales; when a per-tensor scale is not exactly
representable in fp16 and exactness matters (the source was already ternary, e.g. an I2_S file
with a float32 scale), the codes are written with scale 1 and the scale goes into llama.cpp's
optional one-element ``<name>.scale`` tensor, so I2_S → TQ2_0 → I2_S round trips bit for bit.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from bitnet_sdk import formats
from bitnet_sdk.formats._common import signed_codes
from bitnet_sdk.quantization.errors import QuantizationError
from bitnet_sdk.ternary import TernaryTensor

__all__ = [
    "AtomicGGUFWriter",
    "EncodedProjection",
    "common_scale",
    "encode_projection",
    "fits_block",
    "projection_nbytes",
]

logger = logging.getLogger(__name__)

_F16 = int(GGMLQuantizationType.F16)
_F32 = int(GGMLQuantizationType.F32)


def fits_block(qtype: str, cols: int) -> bool:
    """Whether a row of ``cols`` weights can be stored in ``qtype``."""
    return formats.FORMATS[qtype].fits(cols)


def common_scale(t: TernaryTensor) -> float | None:
    """The one ``|scale|`` shared by every row holding a non-zero code (0.0 if none), or None
    when rows disagree (a tensor with per-row scales)."""
    mag = np.abs(t.scale)
    used = (mag != 0) & np.any(t.q != 0, axis=1)
    if not used.any():
        return 0.0
    values = np.unique(mag[used])
    return float(values[0]) if values.size == 1 else None


@dataclass(frozen=True)
class EncodedProjection:
    """A projection ready to write: ``data`` of GGML type ``type_id``, an optional F32
    ``scale`` for the ``.scale`` tensor, and ``stored``, the exact tensor the file represents."""

    data: np.ndarray
    type_id: int
    scale: float | None
    stored: TernaryTensor


def _with_scale(t: TernaryTensor, scale: float) -> TernaryTensor:
    return TernaryTensor.from_scalar(signed_codes(t), scale)


def _fit_scale(t: TernaryTensor, scale_tensor: bool) -> tuple[TernaryTensor, float | None]:
    """(tensor whose scales the packed format will hold, value of the ``.scale`` tensor)."""
    s = common_scale(t)
    if scale_tensor:
        return (t, 1.0) if s is None else (_with_scale(t, 1.0), s)
    if s is None:
        return t, None  # per-row scales: each is rounded to fp16 in its blocks
    s16 = np.float16(s)
    if not np.isfinite(s16):
        raise QuantizationError(f"the weight scale {s} exceeds the float16 range of TQ block scales")
    return _with_scale(t, float(s16)), None  # what llama.cpp's converter stores


def encode_projection(qtype: str, t: TernaryTensor, *, scale_tensor: bool = False) -> EncodedProjection:
    """Encode a ternary projection in ``qtype`` (ternary-valued F16 if its rows do not fit the
    format's blocks).

    I2_S holds its float32 scale exactly. For fp16-scaled storage, ``scale_tensor`` writes the
    codes with scale 1 and returns the exact scale for a ``.scale`` tensor (the caller planned
    one); otherwise a per-tensor scale is rounded to fp16. ``stored`` is the exact tensor the
    file then represents. Raises ``QuantizationError`` for an I2_S tensor with per-row scales.
    """
    cols = t.shape[1]
    fmt = formats.FORMATS[qtype]
    if fmt.per_tensor_scale and fmt.fits(cols):
        s = common_scale(t)
        if s is None:
            raise QuantizationError(f"{fmt.label} stores one scale per tensor; this tensor has per-row scales")
        stored = _with_scale(t, s)
        return EncodedProjection(formats.pack(qtype, stored), fmt.type_id, None, stored)
    packed, extra = _fit_scale(t, scale_tensor)
    held = packed.scale.astype(np.float16).astype(np.float32) * np.float32(1.0 if extra is None else extra)
    stored = TernaryTensor(packed.q, held.astype(np.float32))
    if fits_block(qtype, cols):
        return EncodedProjection(formats.pack(qtype, packed), formats.type_id(qtype), extra, stored)
    values = packed.q.astype(np.float32) * packed.scale[:, None]
    return EncodedProjection(values.astype("<f2"), _F16, extra, stored)


def projection_nbytes(qtype: str, shape: tuple[int, int]) -> tuple[int, int]:
    """(GGML type id, bytes) a projection of ``shape`` will take in ``qtype`` (F16 fallback)."""
    if fits_block(qtype, shape[1]):
        return formats.type_id(qtype), formats.nbytes(qtype, shape)
    return _F16, 2 * shape[0] * shape[1]


class AtomicGGUFWriter:
    """Stream a GGUF file to a temporary name next to ``dst``; publish it atomically.

    Use as a context manager: ``gguf`` (the ``GGUFWriter``) takes key/values; :meth:`plan` each
    tensor in order, :meth:`begin`, :meth:`write` each tensor's data in the same order,
    :meth:`finish`, check ``path`` (the temporary file), then :meth:`publish`. Leaving the
    ``with`` block without publishing deletes the temporary file.
    """

    def __init__(self, dst: str | os.PathLike[str], arch: str) -> None:
        self.dst = Path(dst)
        parent = self.dst.parent
        if not parent.is_dir():
            raise FileNotFoundError(f"destination folder does not exist: {parent}")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.dst.name}.", suffix=".partial", dir=parent)
        os.close(fd)
        self.path = Path(tmp)
        self.gguf = GGUFWriter(self.path, arch)
        self._order: list[tuple[str, int]] = []
        self._next = 0
        self._published = False

    def __enter__(self) -> AtomicGGUFWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._published:
            self.discard()

    def plan(self, name: str, shape: Sequence[int], type_id: int, nbytes: int) -> None:
        """Declare a tensor: ``shape`` in numpy order (rows, cols), ``type_id`` a GGML type."""
        raw = None if type_id == _F32 else type_id
        self.gguf.add_tensor_info(name, tuple(int(d) for d in shape), np.dtype(np.float32), nbytes, raw)  # type: ignore[arg-type]
        self._order.append((name, nbytes))

    def begin(self) -> None:
        """Write header, key/values and the tensor directory."""
        self.gguf.write_header_to_file()
        self.gguf.write_kv_data_to_file()
        self.gguf.write_ti_data_to_file()

    def write(self, name: str, data: np.ndarray) -> None:
        """Write the next planned tensor's bytes (must come in plan order)."""
        if self._next >= len(self._order):
            raise QuantizationError(f"tensor {name} was not planned")
        expected, nbytes = self._order[self._next]
        data = np.ascontiguousarray(data)
        if name != expected or data.nbytes != nbytes:
            raise QuantizationError(
                f"tensor {name} ({data.nbytes} bytes) written where {expected} ({nbytes} bytes) was planned"
            )
        self.gguf.write_tensor_data(data)
        self._next += 1

    def finish(self) -> Path:
        """Close and flush the temporary file to disk; returns its path."""
        if self._next != len(self._order):
            missing = [n for n, _ in self._order[self._next :]]
            raise QuantizationError(f"{len(missing)} planned tensors were not written: {missing[:3]}")
        self.gguf.close()
        with open(self.path, "rb+") as f:
            os.fsync(f.fileno())
        return self.path

    def publish(self) -> Path:
        """Move the finished file to ``dst`` (atomic rename in the same folder)."""
        os.replace(self.path, self.dst)
        self._published = True
        try:
            dir_fd = os.open(self.dst.parent, os.O_RDONLY)
        except OSError:  # some platforms cannot open folders; the rename itself is done
            return self.dst
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
        return self.dst

    def discard(self) -> None:
        """Close and delete the temporary file (safe to call more than once)."""
        try:
            self.gguf.close()
        except Exception:  # closing a half-written file must not hide the original error
            logger.debug("closing the partial output failed", exc_info=True)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
