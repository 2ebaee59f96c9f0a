"""Compute backends as plugins: discover them, list them, pick one.

Typical use::

    from bitnet_sdk import backends
    backend = backends.get()             # auto: BITNET_BACKEND or the best usable one
    backend = backends.get("numpy")      # by name
    for info in backends.available(): ...

Plugin authors import ``hookimpl``, ``BackendSpec`` and ``Backend`` from here
(see ``docs/plugins.md``). Importing this package loads no plugin: the default
``BackendHost`` is created on the first call of ``available``/``get``/
``describe`` and cached; ``new_host()`` builds an independent one (tests,
embedders that need their own plugin set), ``reset()`` drops the cached one.
"""

from __future__ import annotations

import threading
from typing import Any

from bitnet_sdk.backends.base import OPTIONAL_OPS, REQUIRED_OPS, Backend
from bitnet_sdk.backends.errors import (
    BackendError,
    BackendNotFoundError,
    BackendUnavailableError,
    DuplicateBackendError,
    PluginError,
)
from bitnet_sdk.backends.hookspecs import ENTRY_POINT_GROUP, hookimpl
from bitnet_sdk.backends.host import DISABLE_ENV, SELECT_ENV, BackendHost
from bitnet_sdk.backends.info import BackendInfo
from bitnet_sdk.backends.registry import BackendRegistry, BackendSpec, cpu_only

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "OPTIONAL_OPS",
    "REQUIRED_OPS",
    "SELECT_ENV",
    "Backend",
    "BackendError",
    "BackendHost",
    "BackendInfo",
    "BackendNotFoundError",
    "BackendRegistry",
    "BackendSpec",
    "BackendUnavailableError",
    "DuplicateBackendError",
    "PluginError",
    "available",
    "cpu_only",
    "default_host",
    "describe",
    "get",
    "hookimpl",
    "new_host",
    "reset",
]

_default: BackendHost | None = None
_default_lock = threading.Lock()


def default_host() -> BackendHost:
    """The process-wide host, created (not yet loaded) on first call."""
    global _default
    with _default_lock:
        if _default is None:
            _default = BackendHost()
        return _default


def new_host(**kwargs: Any) -> BackendHost:
    """A fresh, independent host; keyword arguments as for ``BackendHost``."""
    return BackendHost(**kwargs)


def reset() -> None:
    """Forget the default host: the next call rediscovers plugins and re-reads the env."""
    global _default
    with _default_lock:
        _default = None


def available() -> list[BackendInfo]:
    """Every backend of the default host, usable ones first, best first."""
    return default_host().available()


def get(name: str | None = "auto", device: str = "cpu", op: str | None = None) -> Backend:
    """A backend instance from the default host; see ``BackendHost.get``."""
    return default_host().get(name, device, op)


def describe(device: str = "cpu") -> dict[str, Any]:
    """JSON-able ``{"backends": [...], "auto": name, "devices": [...], ...}`` for ``/v1/devices``."""
    return default_host().describe(device)
