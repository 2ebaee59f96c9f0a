"""What the pipeline needs from a language-model source (a checkpoint or a GGUF file).

A source lists its tensors under their *output* (GGUF, llama.cpp ``bitnet``) names with shapes and
storage facts, writes its hyper-parameters and vocabulary into a ``GGUFWriter`` under the target
architecture, and hands out one tensor at a time: a float32 array, or a
:class:`~bitnet_sdk.ternary.TernaryTensor` when the source already stores exact ternary values
(packed checkpoints, ternary GGUF files), so conversions between ternary formats stay lossless.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from gguf import GGUFWriter

from bitnet_sdk.ternary import TernaryTensor

__all__ = ["ACT_ALIASES", "LLMSource", "LLMTensor", "normalize_act"]

#: Activation names seen in configs and GGUF files → the two BitNet uses.
ACT_ALIASES = {
    "silu": "silu", "swish": "silu", "swiglu": "silu",
    "relu2": "relu2", "relu_sqr": "relu2", "relu_squared": "relu2", "squared_relu": "relu2",
}


def normalize_act(name: object) -> str | None:
    """``"relu2"`` / ``"silu"`` for a known activation name, else None."""
    return ACT_ALIASES.get(name.lower()) if isinstance(name, str) else None


@dataclass(frozen=True)
class LLMTensor:
    """One tensor of the output model.

    ``name`` is the GGUF name, ``source_name`` the source's own; ``shape`` is numpy order
    (``(rows, cols)`` = ``(out, in)`` for projections); ``source_type`` and ``source_nbytes``
    describe the stored form (e.g. ``"BF16"``, ``"I2_S"``, ``"U8x4"`` for packed checkpoints);
    ``projection`` marks the ternary linear layers; ``exact_scale`` says the source holds an
    exact float32 scale (I2_S, packed checkpoints, llama.cpp ``.scale`` tensors) that fp16
    block scales might not represent, so the writer keeps it in a ``.scale`` tensor.
    """

    name: str
    source_name: str
    shape: tuple[int, ...]
    source_type: str
    source_nbytes: int
    projection: bool
    exact_scale: bool = False


class LLMSource(abc.ABC):
    """A BitNet language model to quantize; see the module docstring."""

    kind: ClassVar[str] = "abstract"

    path: Path
    tensors: list[LLMTensor]
    #: The FFN activation the model computes (``"relu2"`` or ``"silu"``).
    hidden_act: str
    #: The source's own GGUF architecture name, when it has one.
    source_arch: str | None = None
    #: Bytes of the source files holding the weights.
    original_bytes: int = 0

    @abc.abstractmethod
    def write_metadata(self, gw: GGUFWriter) -> None:
        """Write hyper-parameters and vocabulary under ``gw.arch`` (not ``general.file_type``)."""

    @abc.abstractmethod
    def read(self, name: str) -> np.ndarray | TernaryTensor:
        """The tensor called ``name`` in the output: float32, or exact ternary."""

    def read_bf16(self, name: str) -> np.ndarray | None:
        """The tensor's raw BF16 bits (uint16, e.g. a memory-map view) when the source stores
        it that way, else None; lets the quantizer take its fast path (``quantization.bf16``)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and maps."""

    def __enter__(self) -> LLMSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
