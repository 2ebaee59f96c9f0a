"""Hook specifications of the backend plugin system: specs only, no behaviour.

A backend plugin is a module (or any object) whose functions are marked with
``bitnet_sdk.backends.hookimpl`` and named after the specs below. It is found
through the entry-point group ``bitnet_sdk.backends``; the bundled backends
(numpy, llvm, mlx) are registered exactly that way too.

Hooks only *announce* and *choose* backends. Hot-path work (weight repacking,
matmuls) is done by plain methods on the ``Backend`` object a plugin's factory
returns, because a pluggy call per matmul would cost more than the matmul.

Every hook is called once per plugin, in pluggy's order (the plugin registered
last is called first; ``tryfirst``/``trylast`` are honoured). An exception in a
plugin's hook is caught, logged and recorded in ``BackendHost.errors``; the
host then carries on with the other plugins. ``wrapper``/``hookwrapper``
implementations are not supported and are rejected at load time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from bitnet_sdk.backends.base import Backend
    from bitnet_sdk.backends.info import BackendInfo
    from bitnet_sdk.backends.registry import BackendRegistry

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "hookimpl", "hookspec"]

#: pluggy project name: markers of other projects are ignored by our host.
PROJECT_NAME = "bitnet_sdk"
#: Entry-point group scanned for backend plugins.
ENTRY_POINT_GROUP = "bitnet_sdk.backends"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: The marker plugins put on their hook functions.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def bitnet_register_backends(registry: BackendRegistry) -> None:
    """Announce the backends this plugin provides.

    Arguments:
        registry: call ``registry.add(BackendSpec(...))`` once per backend.
            ``add`` raises ``DuplicateBackendError`` when the name is taken.

    Returns:
        Nothing; the return value is ignored.

    Fallback: a plugin that does not implement this hook adds no backend,
    which is not an error. If the hook raises (including a duplicate name),
    every backend this plugin added during the call is withdrawn, the error is
    recorded with stage ``"register"``, and the other plugins still register.
    The registry only accepts specs while this hook runs.
    """


@hookspec(firstresult=True)
def bitnet_choose_backend(op: str | None, device: str, candidates: list[BackendInfo]) -> str | None:
    """Override the automatic choice of a backend (``name="auto"``).

    Called only when neither an explicit name nor ``BITNET_BACKEND`` decides,
    and only when at least one backend is usable.

    Arguments:
        op: the operation the caller needs natively (``"matmul_int"``, ...)
            or ``None`` when any backend will do.
        device: the requested device (``"cpu"``, ``"gpu"``, ...).
        candidates: the usable backends for ``device`` and ``op``, best first
            (highest priority, then name). Do not mutate it.

    Returns:
        The name of one of ``candidates``, or ``None`` to abstain.

    Fallback: ``firstresult`` semantics: the first non-``None`` answer wins and
    later plugins are not asked. When every plugin abstains, the first
    candidate (highest priority) is used. An answer naming a backend that is
    not a candidate, or a hook that raises, is recorded with stage
    ``"choose"`` and ignored (the next plugin is asked). If the chosen
    backend's factory fails, the remaining candidates are tried in order.
    """


@hookspec
def bitnet_backend_selected(backend: Backend, info: BackendInfo, reason: str) -> None:
    """Notification: ``get()`` is about to return ``backend``.

    Useful for logging, metrics, or warming caches of the chosen backend.
    Called on every successful ``get()``, including when the instance comes
    from the host's cache.

    Arguments:
        backend: the ``Backend`` instance being returned.
        info: its ``BackendInfo`` (name, priority, devices, plugin, ...).
        reason: why it was chosen: ``"explicit"`` (a name was passed),
            ``"env"`` (``BITNET_BACKEND``), ``"plugin"`` (a
            ``bitnet_choose_backend`` answer) or ``"priority"`` (highest
            usable priority).

    Returns:
        Nothing; the return value is ignored.

    Fallback: a hook that raises is recorded with stage ``"selected"`` and
    logged; the backend is returned all the same.
    """
