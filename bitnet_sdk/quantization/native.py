"""The BF16 fast path's native kernels (``bitnet_kernels.ternarize``), when they can run here.

Compiled once per process for the host (object code cached on disk like the backend's
kernels). Where LLVM cannot compile for the host, or with ``BITNET_QUANT_NATIVE=off``, the
fast path uses its numpy passes (same bytes, slower).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bitnet_kernels import KernelLibrary
    from bitnet_kernels.ternarize import TernarizeKernels

__all__ = ["ENABLE_ENV", "head_kernels", "kernels"]

log = logging.getLogger(__name__)

ENABLE_ENV = "BITNET_QUANT_NATIVE"
_lock = threading.Lock()
_failed = False


def kernels() -> TernarizeKernels | None:
    """The process's ternarize kernels, or None (switched off, or they cannot be built here)."""
    global _failed
    if os.environ.get(ENABLE_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return None
    with _lock:
        if _failed:
            return None
        try:
            from bitnet_kernels.ternarize import TernarizeKernels

            return TernarizeKernels.shared()
        except Exception as exc:  # llvmlite raises RuntimeError and its own types: numpy path instead
            _failed = True
            log.warning("native quantization kernels unavailable, using numpy: %s", exc)
            return None


def head_kernels(cols: int) -> KernelLibrary | None:
    """The single-threaded kernel library whose head kernels compute the report's calibration
    products (the quantizer runs tensors in parallel already), when rows of ``cols`` weights
    suit them; else None."""
    if kernels() is None:
        return None
    try:
        from bitnet_kernels import KernelLibrary

        lib = KernelLibrary.shared(None, 1)
    except Exception as exc:  # as in kernels()
        log.warning("native head kernels unavailable, using numpy: %s", exc)
        return None
    return lib if cols % lib.isa.float_lanes == 0 else None
