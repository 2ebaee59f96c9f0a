"""``bitnet_llvm``: the llvmlite-JIT CPU backend plugin, registered by entry point.

Entry point (in bitnet-sdk's ``pyproject.toml``)::

    [project.entry-points."bitnet_sdk.backends"]
    llvm = "bitnet_llvm"

Importing this module compiles nothing: the kernels are built (or loaded from
the disk cache) when the host first calls the backend's factory.
"""

from __future__ import annotations

import importlib.metadata

from bitnet_llvm.backend import LlvmBackend
from bitnet_sdk.backends import BackendRegistry, BackendSpec, hookimpl

__all__ = ["PRIORITY", "LlvmBackend", "bitnet_register_backends", "probe_devices"]

#: Above numpy (0): ``auto`` picks llvm wherever one of its variants runs.
PRIORITY = 100


def probe_devices() -> list[str]:
    """``["cpu"]`` when a kernel variant can run here (cheap: no compilation)."""
    from bitnet_kernels.isa import select_isa

    select_isa()  # raises UnsupportedIsaError with the reason (e.g. a bad BITNET_LLVM_ISA)
    return ["cpu"]


@hookimpl
def bitnet_register_backends(registry: BackendRegistry) -> None:
    """Register the ``llvm`` backend (CPU only)."""
    registry.add(
        BackendSpec.for_class(LlvmBackend, priority=PRIORITY, devices=probe_devices, version=_version())
    )


def _version() -> str:
    try:
        return importlib.metadata.version("bitnet-sdk")
    except importlib.metadata.PackageNotFoundError:
        return ""
