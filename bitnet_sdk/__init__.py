"""BitNet SDK: quantize, load and serve 1.58-bit (ternary) models.

Importing the package has no side effects: no plugins are loaded, nothing is
compiled, no database is opened. The public functions below import their
modules on first use.

    >>> import bitnet_sdk
    >>> model = bitnet_sdk.load("model.gguf")               # doctest: +SKIP
    >>> report = bitnet_sdk.validate("model.gguf")          # doctest: +SKIP
    >>> bitnet_sdk.quantize("hf-checkpoint/", "out.gguf")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("bitnet-sdk")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "backends", "load", "quantize", "validate"]

# name -> (module, attribute); resolved lazily by __getattr__ (PEP 562).
_LAZY = {
    "load": ("bitnet_sdk.loading", "load"),
    "validate": ("bitnet_sdk.loading", "validate"),
    "quantize": ("bitnet_sdk.quantization.pipeline", "quantize"),
    "backends": ("bitnet_sdk.backends", None),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'bitnet_sdk' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
