"""Typed facade over ``pm.hook``: the only code that calls backend hooks.

Each method calls one hook *per plugin* (in pluggy's order) rather than all
at once, so that a plugin raising inside its hook is recorded as a
``PluginError`` and skipped while the others still run. A plain
``pm.hook.x(...)`` call would abort at the first exception and could not say
which plugin failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pluggy

from bitnet_sdk.backends.base import Backend
from bitnet_sdk.backends.errors import PluginError
from bitnet_sdk.backends.info import BackendInfo
from bitnet_sdk.backends.registry import BackendRegistry

__all__ = ["BackendHooks"]

log = logging.getLogger(__name__)


class BackendHooks:
    """Calls ``bitnet_*`` hooks with typed arguments and isolates plugin failures.

    ``report`` receives every failure (the host appends it to its error list).
    ``distribution_of`` maps a plugin name to its distribution, for attribution.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        report: Callable[[PluginError], None],
        distribution_of: Callable[[str], str | None],
    ) -> None:
        self._pm = pm
        self._report = report
        self._distribution_of = distribution_of

    def register_backends(self, registry: BackendRegistry) -> None:
        """Ask every plugin to add its specs; a failing plugin's specs are withdrawn."""
        for plugin_name, call in self._each("bitnet_register_backends"):
            try:
                with registry.scope(plugin_name, self._distribution_of(plugin_name)):
                    call(registry=registry)
            except Exception as exc:
                self._fail(plugin_name, "register", exc)

    def choose_backend(
        self, op: str | None, device: str, candidates: list[BackendInfo]
    ) -> tuple[str, str] | None:
        """First valid answer as ``(backend_name, plugin_name)``, or ``None`` if all abstain."""
        names = {c.name for c in candidates}
        for plugin_name, call in self._each("bitnet_choose_backend"):
            try:
                answer = call(op=op, device=device, candidates=list(candidates))
            except Exception as exc:
                self._fail(plugin_name, "choose", exc)
                continue
            if answer is None:
                continue
            if answer not in names:
                self._fail(
                    plugin_name,
                    "choose",
                    ValueError(f"chose {answer!r}, which is not one of {sorted(names)}"),
                )
                continue
            return answer, plugin_name
        return None

    def backend_selected(self, backend: Backend, info: BackendInfo, reason: str) -> None:
        """Notify every plugin; failures are recorded, never raised."""
        for plugin_name, call in self._each("bitnet_backend_selected"):
            try:
                call(backend=backend, info=info, reason=reason)
            except Exception as exc:
                self._fail(plugin_name, "selected", exc)

    # -- internals ---------------------------------------------------------------

    def _each(self, hook_name: str) -> Iterator[tuple[str, Callable[..., Any]]]:
        """``(plugin_name, caller)`` pairs in pluggy's call order (last registered first)."""
        caller = getattr(self._pm.hook, hook_name)
        impls = list(reversed(caller.get_hookimpls()))
        plugins = [impl.plugin for impl in impls]
        for impl in impls:
            others = [p for p in plugins if p is not impl.plugin]
            yield impl.plugin_name, self._pm.subset_hook_caller(hook_name, others)

    def _fail(self, plugin_name: str, stage: str, exc: BaseException) -> None:
        err = PluginError(plugin_name, stage, repr(exc), self._distribution_of(plugin_name))
        log.warning("backend plugin failure: %s", err, exc_info=exc)
        self._report(err)
