"""What a packed ternary format is: its facts, declared once by its module as ``FORMAT``.

Every other place that needs a format's name, GGML type id, block geometry or
``general.file_type`` looks it up in :data:`bitnet_sdk.formats.FORMATS` (built from the
format modules) instead of restating it. Adding a format is a new module in this package
that defines ``FORMAT``, ``nbytes``, ``pack`` and ``unpack``, one line in
``bitnet_sdk/formats/__init__.py``'s ``_MODULES``, and its name in the spec's enums
(``tests/formats/test_registry.py`` holds the spec to the registry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PackedFormat"]


@dataclass(frozen=True)
class PackedFormat:
    """The facts of one packed ternary format."""

    #: The API's and the CLI's name (``"tq2_0"``): a key of ``FORMATS``, the spec's enum value.
    name: str
    #: GGML's name of the tensor type (``"TQ2_0"``).
    label: str
    #: GGML tensor type id (``general`` tensor info).
    type_id: int
    #: ``general.file_type`` of a file whose projections use this format.
    file_type: int
    #: Weights per block: a row's length must be a multiple of it.
    block_size: int
    #: Bytes per block.
    block_bytes: int
    #: Bytes after all the blocks of a tensor (I2_S: its float32 scale, padded).
    trailer_bytes: int = 0
    #: One scale for the whole tensor (I2_S) rather than one per block.
    per_tensor_scale: bool = False

    def fits(self, cols: int) -> bool:
        """Whether rows of ``cols`` weights can be stored in this format."""
        return cols % self.block_size == 0

    def tensor_nbytes(self, shape: tuple[int, ...]) -> int | None:
        """Bytes a tensor of ``shape`` (numpy order) occupies, or None when it cannot be stored."""
        if not shape or not self.fits(shape[-1]):
            return None
        return math.prod(shape) // self.block_size * self.block_bytes + self.trailer_bytes
