"""``bitnet_mlx``: the MLX backend plugin (Apple silicon GPU via Metal, or MLX's CPU).

Entry point (in bitnet-sdk's ``pyproject.toml``)::

    [project.entry-points."bitnet_sdk.backends"]
    mlx = "bitnet_mlx"

This module imports without MLX. When the ``mlx`` package is not installed the
plugin registers nothing (a debug log line says why), so hosts without the
``[mlx]`` extra never see an ``mlx`` entry. When it is installed, the backend
is registered and its cheap device probe reports ``gpu`` (only where Metal is
available) and ``cpu``; an MLX that is installed but broken shows up as an
unavailable ``mlx`` backend carrying the import error.

Priority: ``PRIORITY`` (50) sits above the numpy reference (0) and below the
llvm JIT, the fast CPU path, so ``auto`` on device ``cpu`` prefers llvm. On
device ``gpu`` the mlx backend is the only candidate, so ``get(device="gpu")``
picks it: see ``docs/mlx.md`` for how a Mac selects the GPU.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging

from bitnet_mlx.capabilities import CAPABILITIES
from bitnet_sdk.backends import Backend, BackendRegistry, BackendSpec, hookimpl

__all__ = ["CAPABILITIES", "PRIORITY", "bitnet_register_backends", "devices", "mlx_installed"]

log = logging.getLogger(__name__)

#: Above numpy (0), below llvm (the fast CPU path): see the module docstring.
PRIORITY = 50


def mlx_installed() -> bool:
    """Whether the ``mlx`` package can be found (without importing it)."""
    try:
        return importlib.util.find_spec("mlx") is not None
    except (ImportError, ValueError):
        return False


def devices() -> list[str]:
    """Probe: ``["gpu", "cpu"]`` where Metal is available, else ``["cpu"]``.

    Imports ``mlx.core``; an import error propagates, so the host shows the
    backend as unavailable with that error.
    """
    import mlx.core as mx

    return ["gpu", "cpu"] if mx.metal.is_available() else ["cpu"]


def _factory(device: str) -> Backend:
    from bitnet_mlx.backend import MlxBackend

    return MlxBackend(device)


def _version() -> str:
    try:
        sdk = importlib.metadata.version("bitnet-sdk")
    except importlib.metadata.PackageNotFoundError:
        sdk = ""
    try:
        return f"{sdk} (mlx {importlib.metadata.version('mlx')})".strip()
    except importlib.metadata.PackageNotFoundError:
        return sdk


@hookimpl
def bitnet_register_backends(registry: BackendRegistry) -> None:
    """Register the ``mlx`` backend, unless the ``mlx`` package is not installed."""
    if not mlx_installed():
        log.debug("mlx backend not registered: the 'mlx' package is not installed "
                  "(pip install 'bitnet-sdk[mlx]')")
        return
    registry.add(
        BackendSpec(
            name="mlx",
            factory=_factory,
            priority=PRIORITY,
            devices=devices,
            capabilities=CAPABILITIES,
            description="MLX: packed 2-bit ternary weights, exact int32 matmul, fused layer ops",
            version=_version(),
        )
    )
