"""What a plugin announces (``BackendSpec``) and where it announces it (``BackendRegistry``).

The registry is handed to ``bitnet_register_backends(registry)`` (the tox
pattern): plugins call ``registry.add(spec)``. The host opens one *scope* per
plugin so a plugin that fails half-way withdraws everything it added, and so
every spec is attributed to the plugin (and distribution) that added it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from bitnet_sdk.backends.base import Backend
from bitnet_sdk.backends.errors import BackendError, DuplicateBackendError

__all__ = ["BackendRegistry", "BackendSpec", "cpu_only"]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
#: Names that mean something to the selector and cannot name a backend.
RESERVED_NAMES = frozenset({"auto"})


def cpu_only() -> list[str]:
    """Default device probe: the backend runs on the CPU and nothing else."""
    return ["cpu"]


@dataclass(frozen=True)
class BackendSpec:
    """One backend as a plugin announces it; nothing is constructed yet.

    ``factory(device)`` builds the ``Backend`` (it may be slow: JIT, GPU setup)
    and is called at most once per device per host. ``devices()`` is a cheap
    probe of where the backend can run *on this machine* (``[]`` when it
    cannot run at all; raising counts as unavailable, with the error shown).
    ``capabilities`` names the ops implemented natively (see
    ``Backend.capabilities``); ``prepare_weights`` and ``matmul`` are implied.
    Higher ``priority`` wins automatic selection (numpy, the reference, is 0).
    """

    name: str
    factory: Callable[[str], Backend]
    priority: int = 0
    devices: Callable[[], Sequence[str]] = cpu_only
    capabilities: frozenset[str] = field(default_factory=frozenset)
    description: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(
                f"backend name {self.name!r} must be lower-case letters, digits, '_', '.', '-'"
            )
        if self.name in RESERVED_NAMES:
            raise ValueError(f"backend name {self.name!r} is reserved")
        if not callable(self.factory):
            raise TypeError(f"backend {self.name!r}: factory must be callable")
        if not callable(self.devices):
            raise TypeError(f"backend {self.name!r}: devices must be a callable probe")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise TypeError(f"backend {self.name!r}: priority must be an int")
        caps = frozenset(self.capabilities)
        if not all(isinstance(c, str) for c in caps):
            raise TypeError(f"backend {self.name!r}: capabilities must be strings")
        object.__setattr__(self, "capabilities", caps)

    @classmethod
    def for_class(
        cls,
        backend_cls: type[Backend],
        *,
        priority: int = 0,
        devices: Callable[[], Sequence[str]] = cpu_only,
        description: str = "",
        version: str = "",
    ) -> BackendSpec:
        """Spec for a ``Backend`` subclass: name, capabilities and factory from the class.

        The factory is ``backend_cls(device)``; the description defaults to the
        first line of the class docstring.
        """
        doc = (backend_cls.__doc__ or "").strip().splitlines()
        return cls(
            name=backend_cls.name,
            factory=backend_cls,
            priority=priority,
            devices=devices,
            capabilities=backend_cls.capabilities,
            description=description or (doc[0] if doc else ""),
            version=version,
        )


@dataclass(frozen=True)
class _Entry:
    spec: BackendSpec
    plugin: str
    distribution: str | None


class BackendRegistry:
    """Backend specs by name, each attributed to the plugin that added it."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._scope: tuple[str, str | None] | None = None

    def add(self, spec: BackendSpec) -> None:
        """Register ``spec``; raise ``DuplicateBackendError`` if its name is taken.

        Only valid while a plugin's ``bitnet_register_backends`` runs.
        """
        if not isinstance(spec, BackendSpec):
            raise TypeError(f"registry.add() takes a BackendSpec, got {type(spec).__name__}")
        if self._scope is None:
            raise BackendError("registry.add() is only valid inside bitnet_register_backends")
        plugin, dist = self._scope
        taken = self._entries.get(spec.name)
        if taken is not None:
            raise DuplicateBackendError(
                f"backend name {spec.name!r} from plugin {plugin!r} is already registered "
                f"by plugin {taken.plugin!r}; the first registration is kept"
            )
        self._entries[spec.name] = _Entry(spec, plugin, dist)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[BackendSpec]:
        return iter([e.spec for e in self._entries.values()])

    def names(self) -> list[str]:
        return list(self._entries)

    def owner(self, name: str) -> tuple[str, str | None]:
        """``(plugin, distribution)`` that registered backend ``name``."""
        entry = self._entries[name]
        return entry.plugin, entry.distribution

    def spec(self, name: str) -> BackendSpec:
        return self._entries[name].spec

    @contextmanager
    def scope(self, plugin: str, distribution: str | None) -> Iterator[None]:
        """Attribute ``add`` calls to ``plugin``; withdraw them all if the block raises."""
        if self._scope is not None:
            raise BackendError(f"registry scope already open for plugin {self._scope[0]!r}")
        before = set(self._entries)
        self._scope = (plugin, distribution)
        try:
            yield
        except BaseException:
            for name in set(self._entries) - before:
                del self._entries[name]
            raise
        finally:
            self._scope = None
