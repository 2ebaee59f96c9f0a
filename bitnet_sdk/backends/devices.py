"""Device records for ``GET /v1/devices``: what a device name like ``"cpu"`` stands for here.

Backends name devices with short strings (``cpu``, ``gpu``); the API's
``Device`` schema wants ``{id, name, kind, memory_bytes, threads}``. Only the
CPU is described from the operating system (model name, logical cores, RAM);
other devices are reported by name with unknown sizes, since probing a GPU is
the backend's business, not the host's.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["device_record"]

_KINDS = frozenset({"cpu", "gpu", "npu"})


def device_record(device: str) -> dict[str, Any]:
    """The API ``Device`` object for ``device`` (a copy: callers may mutate it)."""
    if device == "cpu":
        return dict(_cpu_record())
    kind = device if device in _KINDS else "other"
    return {"id": device, "name": device, "kind": kind, "memory_bytes": None, "threads": None}


@functools.lru_cache(maxsize=1)
def _cpu_record() -> dict[str, Any]:
    threads = os.cpu_count()
    model = _cpu_model() or platform.machine() or "CPU"
    name = f"{model} ({threads} threads)" if threads else model
    return {"id": "cpu", "name": name, "kind": "cpu", "memory_bytes": _total_memory(),
            "threads": threads}


def _cpu_model() -> str | None:
    """``model name`` from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _total_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None
