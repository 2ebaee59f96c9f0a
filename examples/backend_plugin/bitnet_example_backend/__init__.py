"""``bitnet_example_backend``: a third-party backend plugin for BitNet SDK.

Installing this distribution is all it takes: its entry point in group
``bitnet_sdk.backends`` points at this module, whose hook functions (marked
with ``bitnet_sdk.backends.hookimpl``) announce the ``example`` backend.
"""

from __future__ import annotations

from bitnet_example_backend.backend import PackedBackend
from bitnet_sdk.backends import BackendRegistry, BackendSpec, hookimpl

__all__ = ["PackedBackend", "bitnet_register_backends"]

#: Below numpy (0): installed, it is used only when asked for by name
#: (``get("example")`` or ``BITNET_BACKEND=example``), never by ``auto``.
PRIORITY = -10


@hookimpl
def bitnet_register_backends(registry: BackendRegistry) -> None:
    """Announce the ``example`` backend, available on the CPU."""
    registry.add(BackendSpec.for_class(PackedBackend, priority=PRIORITY, version="0.1.0"))
