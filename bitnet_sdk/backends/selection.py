"""Which backend ``get()`` returns, and why.

Order of precedence:

1. an explicit ``name`` (anything but ``"auto"``/``None``/``""``);
2. ``BITNET_BACKEND`` (unless empty or ``auto``);
3. a ``bitnet_choose_backend`` answer from a plugin;
4. the usable backend of highest priority (ties: by name), where *usable*
   means its probe lists the device and, when ``op`` is given, it lists ``op``
   in its capabilities.

In steps 1–2 a missing, failed or unusable backend is an error (a name the
user typed must not silently fall back). In steps 3–4 a backend whose factory
fails is recorded and the next candidate is tried.

``device="auto"`` resolves first: for a named backend, the first device its
probe lists (plugins list their preferred device first: MLX says ``gpu``
before ``cpu`` where Metal exists); otherwise an accelerator when any usable
backend offers one (so a Mac picks MLX on Metal over the faster-on-CPU llvm),
else ``cpu``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from bitnet_sdk.backends.base import Backend
from bitnet_sdk.backends.devices import device_record
from bitnet_sdk.backends.errors import (
    BackendError,
    BackendNotFoundError,
    BackendUnavailableError,
    PluginError,
)
from bitnet_sdk.backends.facade import BackendHooks
from bitnet_sdk.backends.info import BackendInfo
from bitnet_sdk.backends.registry import BackendRegistry

__all__ = ["SELECT_ENV", "HostView", "describe_host", "select"]


class HostView(Protocol):
    """What selection needs of a host (``bitnet_sdk.backends.host.BackendHost`` is one).

    A protocol rather than an import, so the host can use this module without a circle.
    """

    @property
    def environ(self) -> Mapping[str, str]: ...
    @property
    def registry(self) -> BackendRegistry: ...
    @property
    def disabled(self) -> list[str]: ...
    @property
    def errors(self) -> list[PluginError]: ...
    @property
    def hooks(self) -> BackendHooks: ...
    def available(self) -> list[BackendInfo]: ...
    def info(self, name: str) -> BackendInfo | None: ...
    def create(self, info: BackendInfo, device: str) -> Backend: ...

#: Backend name used when ``get()`` is asked for ``auto``.
SELECT_ENV = "BITNET_BACKEND"


def select(
    host: HostView, name: str | None, device: str, op: str | None
) -> tuple[Backend, BackendInfo, str]:
    """``(backend, info, reason)`` following the module's precedence rules."""
    requested, reason = (name or "auto").strip(), "explicit"
    if requested == "auto":
        env = host.environ.get(SELECT_ENV, "").strip()
        if env and env != "auto":
            requested, reason = env, "env"
    if device == "auto":
        device = _auto_device(host, None if requested == "auto" else requested, reason, op)
    if requested != "auto":
        info = _require(host, requested, reason)
        problem = _why_unusable(info, device, op)
        if problem:
            raise BackendUnavailableError(f"{problem}; {_summary(host)}")
        return host.create(info, device), info, reason
    return _select_auto(host, device, op)


def _select_auto(host: HostView, device: str, op: str | None) -> tuple[Backend, BackendInfo, str]:
    candidates = sorted(
        (i for i in host.available() if i.usable(device, op)),
        key=lambda i: (-i.priority, i.name),
    )
    if not candidates:
        need = f"native {op!r} " if op else ""
        raise BackendUnavailableError(
            f"no backend can run {need}on device {device!r}; {_summary(host)}"
        )
    first_reason = "priority"
    choice = host.hooks.choose_backend(op, device, candidates)
    if choice is not None:
        chosen = next(i for i in candidates if i.name == choice[0])
        candidates = [chosen] + [i for i in candidates if i is not chosen]
        first_reason = "plugin"
    failures: list[str] = []
    for index, info in enumerate(candidates):
        try:
            backend = host.create(info, device)
        except BackendUnavailableError as exc:
            failures.append(str(exc))
            continue
        return backend, info, first_reason if index == 0 else "priority"
    raise BackendUnavailableError(
        f"every usable backend failed to start on {device!r}: {'; '.join(failures)}"
    )


AUTO_DEVICE = "auto"
CPU = "cpu"


def _auto_device(host: HostView, name: str | None, reason: str, op: str | None) -> str:
    """The concrete device ``device="auto"`` stands for (see the module docstring)."""
    if name is not None:
        info = _require(host, name, reason)
        return info.devices[0] if info.devices else CPU
    accelerators = sorted(
        ((i, d) for i in host.available() for d in i.devices if d != CPU and i.usable(d, op)),
        key=lambda pair: (-pair[0].priority, pair[0].name),
    )
    return accelerators[0][1] if accelerators else CPU


def _require(host: HostView, name: str, reason: str) -> BackendInfo:
    info = host.info(name)
    via = f" (from {SELECT_ENV})" if reason == "env" else ""
    if info is None:
        raise BackendNotFoundError(f"no backend named {name!r}{via}; {_summary(host)}")
    if name not in host.registry:
        raise BackendNotFoundError(
            f"backend {name!r}{via} did not load: {info.error}; {_summary(host)}"
        )
    return info


def _why_unusable(info: BackendInfo, device: str, op: str | None) -> str | None:
    if not info.available:
        return f"backend {info.name!r} is unavailable: {info.error or 'its probe found no device'}"
    if device not in info.devices:
        return f"backend {info.name!r} does not run on {device!r} (devices: {list(info.devices)})"
    if not info.supports(op):
        return f"backend {info.name!r} has no native {op!r} (capabilities: {list(info.capabilities)})"
    return None


def _summary(host: HostView) -> str:
    """``available: numpy (cpu), ...; unavailable: ...; load errors: ...`` for error messages."""
    infos = host.available()
    ok = [f"{i.name} ({', '.join(i.devices)})" for i in infos if i.available]
    bad = [f"{i.name}: {i.error}" for i in infos if not i.available]
    parts = [f"available backends: {', '.join(ok) if ok else 'none'}"]
    if bad:
        parts.append(f"unavailable: {'; '.join(bad)}")
    if host.disabled:
        parts.append(f"disabled by BITNET_DISABLE_PLUGINS: {', '.join(host.disabled)}")
    return "; ".join(parts)


def describe_host(host: HostView, device: str) -> dict[str, Any]:
    """What ``GET /v1/devices`` returns: backends, devices, the ``auto`` pick, errors.

    Shape (the API's ``Devices`` schema plus extras): ``auto`` (name or null),
    ``auto_reason``, ``auto_error``, ``device`` (the one ``auto`` was resolved
    for), ``devices`` (``Device`` objects usable by some backend), ``backends``
    (``BackendInfo.to_dict()`` with ``devices`` as ``Device`` objects),
    ``auto_variant`` (what the picked backend runs, e.g. the ISA a JIT chose),
    ``disabled`` (plugin names) and ``errors`` (``PluginError.to_dict()``).

    Resolving ``auto`` builds that backend (cached by the host), so a factory
    failure shows up here instead of on the first request. No notification
    hook is fired: describing is not selecting.
    """
    auto: str | None = None
    auto_reason: str | None = None
    auto_error: str | None = None
    auto_variant: str | None = None
    try:
        backend, info, auto_reason = select(host, "auto", device, None)
        auto, auto_variant = info.name, backend.variant or None
    except BackendError as exc:
        auto_error = str(exc)
    infos = host.available()
    here = sorted({d for i in infos if i.available for d in i.devices})
    return {
        "device": device,
        "auto": auto,
        "auto_reason": auto_reason,
        "auto_error": auto_error,
        "auto_variant": auto_variant,
        "devices": [device_record(d) for d in here],
        "backends": [
            {**i.to_dict(), "devices": [device_record(d) for d in i.devices]} for i in infos
        ],
        "disabled": host.disabled,
        "errors": [e.to_dict() for e in host.errors],
    }
