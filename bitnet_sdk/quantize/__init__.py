"""The quantization pipeline: checkpoints, GGUF and ONNX models to ternary GGUF files.

    >>> from bitnet_sdk.quantize import quantize
    >>> report = quantize("bitnet-2b/", "bitnet-2b.tq2_0.gguf", "tq2_0")   # doctest: +SKIP
    >>> report.to_dict()["compression_ratio"]                              # doctest: +SKIP

See :mod:`bitnet_sdk.quantize.pipeline` for sources, targets, safety and progress; the report is
:class:`~bitnet_sdk.quantize.report.QuantizationReport`.

The package is also callable — ``bitnet_sdk.quantize(src, dst)`` — because ``bitnet_sdk``
exposes the ``quantize`` function under the same name as this package: once the package has been
imported, the attribute ``bitnet_sdk.quantize`` is this module, and calling it forwards to
:func:`~bitnet_sdk.quantize.pipeline.quantize`. Importing this package imports no heavy module.
"""

from __future__ import annotations

import importlib
import sys
import types
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
    "quantize": ("bitnet_sdk.quantize.pipeline", "quantize"),
    "QuantizationReport": ("bitnet_sdk.quantize.report", "QuantizationReport"),
    "Cancelled": ("bitnet_sdk.quantize.errors", "Cancelled"),
    "QuantizationCancelled": ("bitnet_sdk.quantize.errors", "QuantizationCancelled"),
    "QuantizationError": ("bitnet_sdk.quantize.errors", "QuantizationError"),
    "UnsupportedOpsError": ("bitnet_sdk.quantize.errors", "UnsupportedOpsError"),
    "UnsupportedSourceError": ("bitnet_sdk.quantize.errors", "UnsupportedSourceError"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attr)


class _CallableModule(types.ModuleType):
    """This package's module type: calling it runs ``pipeline.quantize``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from bitnet_sdk.quantize.pipeline import quantize

        return quantize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
