"""Which tensors become ternary and which stay in higher precision (the BitNet recipe).

BitNet b1.58 quantizes the weight matrices of its linear layers and nothing else: token
embeddings, the output head, norm weights and biases stay in high precision. :class:`Recipe`
encodes that rule plus user choices:

* ``keep_high_precision``: glob patterns (``fnmatch``, case-sensitive) of tensor names that stay
  out of ternary quantization, matched against both the output (GGUF) name and the source's own
  name (``model.layers.0.mlp.down_proj.weight``, an ONNX initializer name...), e.g.
  ``["blk.0.*", "classifier.*"]``;
* ``high_precision_type``: the storage of kept matrices, ``f32`` / ``f16`` / ``bf16`` / ``q8_0``
  (1-D tensors — norms, biases — are always F32, as llama.cpp's converter writes them).

Language models have less freedom than dense networks: the BitNet runtime (ours and llama.cpp's)
runs every attention/FFN projection as a ternary matmul and reads embeddings as floats, so a
pattern that would keep a projection in float is refused up front (see
:meth:`Recipe.check_llm_projection`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from gguf import GGMLQuantizationType, quants

from bitnet_sdk.quantization.errors import QuantizationError

__all__ = ["HIGH_PRECISION_TYPES", "Recipe", "encode_float", "float_nbytes", "float_type_id"]

_T = GGMLQuantizationType
#: High-precision storage types by name.
HIGH_PRECISION_TYPES: dict[str, int] = {
    "f32": int(_T.F32),
    "f16": int(_T.F16),
    "bf16": int(_T.BF16),
    "q8_0": int(_T.Q8_0),
}
_Q8_0_BLOCK = 32


@dataclass(frozen=True)
class Recipe:
    """The quantization recipe of one run; see the module docstring."""

    keep_high_precision: tuple[str, ...] = ()
    high_precision_type: str = "f16"
    _patterns: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        if self.high_precision_type not in HIGH_PRECISION_TYPES:
            raise QuantizationError(
                f"high_precision_type must be one of {sorted(HIGH_PRECISION_TYPES)}, "
                f"got {self.high_precision_type!r}"
            )
        patterns = tuple(str(p) for p in self.keep_high_precision)
        if any(not p for p in patterns):
            raise QuantizationError("keep_high_precision patterns must be non-empty strings")
        object.__setattr__(self, "_patterns", patterns)

    @classmethod
    def build(
        cls, keep_high_precision: Iterable[str] | str | None, high_precision_type: str | None,
        default_type: str,
    ) -> Recipe:
        """A recipe from ``quantize``'s keyword arguments (a single pattern may be a string)."""
        if isinstance(keep_high_precision, str):
            keep_high_precision = [keep_high_precision]
        return cls(tuple(keep_high_precision or ()), (high_precision_type or default_type).lower())

    def user_keeps(self, *names: str) -> str | None:
        """The first user pattern matching any of ``names``, or None."""
        for pattern in self._patterns:
            if any(fnmatch.fnmatchcase(n, pattern) for n in names if n):
                return pattern
        return None

    def check_llm_projection(self, name: str, source_name: str) -> None:
        """Refuse a pattern that would keep a language-model projection in float."""
        pattern = self.user_keeps(name, source_name)
        if pattern is not None:
            raise QuantizationError(
                f"keep_high_precision pattern {pattern!r} matches the projection {name}: BitNet "
                f"runs every attention and feed-forward projection as a ternary matmul, so "
                f"projections cannot stay in float (keep embeddings, output head or norms instead)"
            )

    def kept_type(self, shape: Sequence[int]) -> int:
        """GGML type of a tensor kept in high precision: F32 for vectors, else the recipe's
        type (F16 when ``q8_0`` cannot hold the row length)."""
        if len(shape) < 2:
            return int(_T.F32)
        t = HIGH_PRECISION_TYPES[self.high_precision_type]
        if t == int(_T.Q8_0) and shape[-1] % _Q8_0_BLOCK:
            return int(_T.F16)
        return t


def float_type_id(name: str) -> int:
    """GGML id of a high-precision type name."""
    return HIGH_PRECISION_TYPES[name]


def float_nbytes(type_id: int, shape: Sequence[int]) -> int:
    """Bytes a float (or Q8_0) tensor of ``shape`` takes."""
    n = int(np.prod(shape, dtype=np.int64))
    if type_id == int(_T.F32):
        return 4 * n
    if type_id in (int(_T.F16), int(_T.BF16)):
        return 2 * n
    if type_id == int(_T.Q8_0):
        return n // _Q8_0_BLOCK * 34
    raise ValueError(f"not a high-precision type id: {type_id}")


def encode_float(type_id: int, values: np.ndarray) -> np.ndarray:
    """The bytes (as an array GGUFWriter can write) of ``values`` in a high-precision type.

    Raises ``QuantizationError`` for NaN/inf, or values beyond float16 range in F16.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise QuantizationError("tensor holds NaN or infinite values")
    if type_id == int(_T.F32):
        return values.astype("<f4", copy=False)
    if type_id == int(_T.F16):
        if values.size and float(np.abs(values).max()) > 65504.0:
            raise QuantizationError("values exceed the float16 range (65504); use f32 or bf16")
        return values.astype("<f2")
    rows = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values.reshape(1, -1)
    return np.ascontiguousarray(quants.quantize(rows, GGMLQuantizationType(type_id)))
