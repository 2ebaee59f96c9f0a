"""``bitnet_numpy``: the reference backend plugin, registered by entry point like any other.

Entry point (in bitnet-sdk's ``pyproject.toml``)::

    [project.entry-points."bitnet_sdk.backends"]
    numpy = "bitnet_numpy"
"""

from __future__ import annotations

import importlib.metadata

from bitnet_numpy.backend import NumpyBackend
from bitnet_sdk.backends import BackendRegistry, BackendSpec, hookimpl

__all__ = ["NumpyBackend", "bitnet_register_backends"]

#: Lowest priority: any faster backend that can run the request wins ``auto``.
PRIORITY = 0


@hookimpl
def bitnet_register_backends(registry: BackendRegistry) -> None:
    """Register the ``numpy`` backend (CPU only)."""
    registry.add(BackendSpec.for_class(NumpyBackend, priority=PRIORITY, version=_version()))


def _version() -> str:
    try:
        return importlib.metadata.version("bitnet-sdk")
    except importlib.metadata.PackageNotFoundError:
        return ""
