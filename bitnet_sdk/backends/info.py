"""``BackendInfo``: what the host knows about one backend, without constructing it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitnet_sdk.backends.base import REQUIRED_OPS

__all__ = ["BackendInfo"]


@dataclass(frozen=True)
class BackendInfo:
    """A backend as listed by ``available()``, ``bitnet backends`` and ``GET /v1/devices``.

    ``devices`` is the probe's answer on this machine; ``available`` is true
    when it named at least one device and nothing failed. ``error`` explains
    why not (probe or factory failure, or — for an entry whose plugin failed to
    load, named after the plugin — the load error). ``plugin`` is the
    entry-point name that registered it, ``distribution`` the installed
    distribution (``name==version``) providing that entry point, if any.
    """

    name: str
    priority: int
    devices: tuple[str, ...]
    capabilities: tuple[str, ...]
    available: bool
    error: str | None
    description: str
    version: str
    plugin: str
    distribution: str | None

    def supports(self, op: str | None) -> bool:
        """Whether ``op`` is native here (``None``: any op; required ops always are)."""
        return op is None or op in REQUIRED_OPS or op in self.capabilities

    def usable(self, device: str, op: str | None = None) -> bool:
        """Available on ``device`` and native for ``op``: what automatic selection asks."""
        return self.available and device in self.devices and self.supports(op)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists, not tuples), stable key order."""
        return {
            "name": self.name,
            "priority": self.priority,
            "devices": list(self.devices),
            "capabilities": list(self.capabilities),
            "available": self.available,
            "error": self.error,
            "description": self.description,
            "version": self.version,
            "plugin": self.plugin,
            "distribution": self.distribution,
        }
