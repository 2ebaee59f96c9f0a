"""The quantization pipeline: checkpoints, GGUF and ONNX models to ternary GGUF files.

    >>> from bitnet_sdk.quantization import quantize
    >>> report = quantize("bitnet-2b/", "bitnet-2b.tq2_0.gguf", "tq2_0")   # doctest: +SKIP
    >>> report.to_dict()["compression_ratio"]                              # doctest: +SKIP

See :mod:`bitnet_sdk.quantization.pipeline` for sources, targets, safety and progress; the report is
:class:`~bitnet_sdk.quantization.report.QuantizationReport`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Cancelled",
    "QuantizationCancelled",
    "QuantizationError",
    "QuantizationReport",
    "UnsupportedOpsError",
    "UnsupportedSourceError",
    "quantize",
]

_LAZY = {
    "quantize": ("bitnet_sdk.quantization.pipeline", "quantize"),
    "QuantizationReport": ("bitnet_sdk.quantization.report", "QuantizationReport"),
    "Cancelled": ("bitnet_sdk.quantization.errors", "Cancelled"),
    "QuantizationCancelled": ("bitnet_sdk.quantization.errors", "QuantizationCancelled"),
    "QuantizationError": ("bitnet_sdk.quantization.errors", "QuantizationError"),
    "UnsupportedOpsError": ("bitnet_sdk.quantization.errors", "UnsupportedOpsError"),
    "UnsupportedSourceError": ("bitnet_sdk.quantization.errors", "UnsupportedSourceError"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attr)
