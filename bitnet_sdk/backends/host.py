"""The plugin host: one ``pluggy.PluginManager`` per ``BackendHost``, built on first use.

Loading (``BackendHost.load``, idempotent, run lazily by every public method):

1. add the hookspecs of ``bitnet_sdk.backends.hookspecs``;
2. read ``BITNET_DISABLE_PLUGINS``: comma-separated entry-point names to
   skip (``numpy,mlx``), or ``all`` to skip every entry point (plugins passed
   to the constructor still load: they are explicit code, not discovery);
3. load each entry point of group ``bitnet_sdk.backends`` (sorted by name),
   then the constructor's plugins; a plugin that raises on import or that
   pluggy rejects is recorded in ``errors`` (``PluginError``), logged and skipped;
4. ``check_pending()``, unregistering (and recording) each offending plugin
   until it passes; hook wrappers are rejected the same way;
5. call ``bitnet_register_backends(registry)`` per plugin (see ``facade``).

Selection (``get``) is in ``bitnet_sdk.backends.selection``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pluggy

from bitnet_sdk.backends import hookspecs
from bitnet_sdk.backends.base import Backend
from bitnet_sdk.backends.errors import BackendUnavailableError, PluginError
from bitnet_sdk.backends.facade import BackendHooks
from bitnet_sdk.backends.info import BackendInfo
from bitnet_sdk.backends.registry import BackendRegistry
from bitnet_sdk.backends.selection import SELECT_ENV, describe_host, select

__all__ = ["DISABLE_ENV", "SELECT_ENV", "BackendHost"]

log = logging.getLogger(__name__)

#: Comma-separated plugin (entry-point) names not to load, or ``all``.
DISABLE_ENV = "BITNET_DISABLE_PLUGINS"
_LOAD_STAGES = frozenset({"import", "validate", "register"})
_HOOK_NAMES = tuple(n for n in vars(hookspecs) if n.startswith("bitnet_"))


class BackendHost:
    """Discovers backend plugins and hands out ``Backend`` instances.

    ``entry_points=False`` skips discovery (tests); ``plugins`` are extra
    ``(name, plugin_object)`` pairs registered after the entry points;
    ``environ`` replaces ``os.environ`` for ``BITNET_*`` variables (read at
    load for ``BITNET_DISABLE_PLUGINS``, at each ``get`` for ``BITNET_BACKEND``).
    Thread-safe; instances are cached per ``(backend, device)``.
    """

    def __init__(
        self,
        *,
        entry_points: bool = True,
        plugins: Iterable[tuple[str, object]] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._use_entry_points = entry_points
        self._extra = list(plugins)
        self._environ = environ
        self._lock = threading.RLock()
        self._loaded = False
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._registry = BackendRegistry()
        self._errors: list[PluginError] = []
        self._disabled: list[str] = []
        self._dists: dict[str, str | None] = {}
        self._probes: dict[str, tuple[tuple[str, ...], str | None]] = {}
        self._create_errors: dict[str, dict[str, str]] = {}
        self._instances: dict[tuple[str, str], Backend] = {}
        self.hooks = BackendHooks(self._pm, self._errors.append, self._dists.get)

    # -- state -------------------------------------------------------------------

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The underlying manager (loaded); for introspection, not for calling hooks."""
        self.load()
        return self._pm

    @property
    def registry(self) -> BackendRegistry:
        self.load()
        return self._registry

    @property
    def errors(self) -> list[PluginError]:
        """Every plugin failure so far (load-time and hook-time), oldest first."""
        self.load()
        return list(self._errors)

    @property
    def load_errors(self) -> list[PluginError]:
        """Failures that kept a plugin's backends out: import, validation, registration."""
        return [e for e in self.errors if e.stage in _LOAD_STAGES]

    @property
    def disabled(self) -> list[str]:
        """Entry-point names skipped because of ``BITNET_DISABLE_PLUGINS``."""
        self.load()
        return list(self._disabled)

    # -- loading -----------------------------------------------------------------

    def load(self) -> None:
        """Load plugins and collect their specs once; later calls do nothing."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            self._pm.add_hookspecs(hookspecs)
            disable_all, blocked = _parse_disabled(self.environ.get(DISABLE_ENV, ""))
            for name in blocked:
                self._pm.set_blocked(name)
            if self._use_entry_points:
                self._load_entry_points(disable_all)
            for name, plugin in self._extra:
                self._register(name, plugin, None)
            self._validate()
            self.hooks.register_backends(self._registry)
            log.debug(
                "backends loaded",
                extra={"backends": self._registry.names(), "errors": len(self._errors)},
            )

    def _load_entry_points(self, disable_all: bool) -> None:
        eps = importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
        for ep in sorted(eps, key=lambda e: e.name):
            dist = _dist_label(ep)
            if disable_all or self._pm.is_blocked(ep.name):
                self._disabled.append(ep.name)
                continue
            if self._pm.has_plugin(ep.name):
                self._fail(ep.name, "import", f"plugin name already loaded; {ep.value} skipped", dist)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                log.debug("backend plugin %r import traceback", ep.name, exc_info=exc)
                self._fail(ep.name, "import", repr(exc), dist)
                continue
            self._register(ep.name, plugin, dist)

    def _register(self, name: str, plugin: object, dist: str | None) -> None:
        if self._pm.is_blocked(name):
            self._disabled.append(name)
            return
        try:
            self._pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(name, "validate", repr(exc), dist)
            return
        self._dists[name] = dist

    def _validate(self) -> None:
        """Drop plugins with unknown hooks (``check_pending``) or hook wrappers."""
        for spec_name in _HOOK_NAMES:
            for impl in getattr(self._pm.hook, spec_name).get_hookimpls():
                if impl.wrapper or impl.hookwrapper:
                    self._drop(impl.plugin, f"{spec_name}: hook wrappers are not supported")
        while True:
            try:
                self._pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                self._drop(exc.plugin, str(exc))

    def _drop(self, plugin: object, reason: str) -> None:
        name = self._pm.get_name(plugin)
        if name is None:
            return  # already dropped for another reason
        self._pm.unregister(plugin)
        self._fail(name, "validate", reason, self._dists.pop(name, None))

    def _fail(self, plugin: str, stage: str, error: str, dist: str | None) -> None:
        err = PluginError(plugin, stage, error, dist)
        log.warning("backend plugin skipped: %s", err, extra={"plugin": plugin, "stage": stage})
        self._errors.append(err)

    # -- queries -----------------------------------------------------------------

    def available(self) -> list[BackendInfo]:
        """Every backend, best first (priority, then name), plus failed plugins.

        A plugin that failed to load and registered nothing appears as an
        unavailable entry named after the plugin, with the failure as ``error``.
        Probes run once per host.
        """
        self.load()
        with self._lock:
            infos = [self._info(name) for name in self._registry.names()]
            infos += self._failed_plugin_infos()
        return sorted(infos, key=lambda i: (not i.available, -i.priority, i.name))

    def get(self, name: str | None = "auto", device: str = "cpu", op: str | None = None) -> Backend:
        """The backend to use: explicit ``name`` > ``BITNET_BACKEND`` > plugin choice > priority.

        ``device="auto"`` prefers an accelerator a usable backend offers, else ``cpu``
        (the loader and server default to it; this method keeps ``cpu``).

        ``op`` restricts automatic selection to backends listing it natively.
        Raises ``BackendNotFoundError`` (unknown name or failed plugin, with the
        available backends and load errors in the message) or
        ``BackendUnavailableError`` (wrong device, missing op, probe/factory failure).
        """
        backend, info, reason = select(self, name, device, op)
        self.hooks.backend_selected(backend, info, reason)
        return backend

    def describe(self, device: str = "cpu") -> dict[str, Any]:
        """JSON-able summary for ``GET /v1/devices`` and ``bitnet backends --json``."""
        return describe_host(self, device)

    # -- used by selection -------------------------------------------------------

    def info(self, name: str) -> BackendInfo | None:
        """The info of backend (or failed plugin) ``name``, or ``None``."""
        for info in self.available():
            if info.name == name:
                return info
        return None

    def create(self, info: BackendInfo, device: str) -> Backend:
        """The cached instance of ``info`` on ``device``, built by its factory on first use."""
        key = (info.name, device)
        with self._lock:
            if key in self._instances:
                return self._instances[key]
            spec = self._registry.spec(info.name)
            try:
                backend = spec.factory(device)
                if not isinstance(backend, Backend):
                    raise TypeError(f"factory returned {type(backend).__name__}, not a Backend")
            except Exception as exc:
                log.warning("backend %r failed to start on %r", info.name, device, exc_info=exc)
                self._create_errors.setdefault(info.name, {})[device] = repr(exc)
                raise BackendUnavailableError(
                    f"backend {info.name!r} failed to start on {device!r}: {exc!r}"
                ) from exc
            self._instances[key] = backend
            return backend

    def _info(self, name: str) -> BackendInfo:
        spec = self._registry.spec(name)
        if name not in self._probes:
            self._probes[name] = _probe(name, spec.devices)
        devices, probe_error = self._probes[name]
        error = probe_error
        failed = self._create_errors.get(name, {})
        if failed:  # a device whose factory failed is no longer offered
            devices = tuple(d for d in devices if d not in failed)
            starts = "; ".join(f"{d}: {e}" for d, e in sorted(failed.items()))
            error = f"{error}; failed to start on {starts}" if error else f"failed to start on {starts}"
        plugin, dist = self._registry.owner(name)
        return BackendInfo(
            name=name,
            priority=spec.priority,
            devices=devices,
            capabilities=tuple(sorted(spec.capabilities)),
            available=bool(devices) and probe_error is None,
            error=error,
            description=spec.description,
            version=spec.version,
            plugin=plugin,
            distribution=dist,
        )

    def _failed_plugin_infos(self) -> list[BackendInfo]:
        owners = {self._registry.owner(n)[0] for n in self._registry.names()}
        out: dict[str, BackendInfo] = {}
        for err in self._errors:
            if err.stage not in _LOAD_STAGES or err.plugin in owners:
                continue
            if err.plugin in self._registry or err.plugin in out:
                continue
            out[err.plugin] = BackendInfo(
                name=err.plugin, priority=0, devices=(), capabilities=(), available=False,
                error=str(err), description="plugin failed to load", version="",
                plugin=err.plugin, distribution=err.distribution,
            )
        return list(out.values())


def _parse_disabled(raw: str) -> tuple[bool, set[str]]:
    names = {n.strip() for n in raw.split(",") if n.strip()}
    return "all" in names, names - {"all"}


def _probe(name: str, devices: Callable[[], Sequence[str]]) -> tuple[tuple[str, ...], str | None]:
    try:
        found = devices()
        if isinstance(found, str) or not all(isinstance(d, str) for d in found):
            raise TypeError(f"devices() must return a list of strings, got {found!r}")
        return tuple(found), None
    except Exception as exc:
        log.warning("backend %r device probe failed", name, exc_info=exc)
        return (), f"device probe failed: {exc!r}"


def _dist_label(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    return f"{dist.metadata['Name']}=={dist.version}"
