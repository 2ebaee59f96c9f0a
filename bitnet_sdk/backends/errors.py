"""Exceptions and error records of the backend plugin system."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "BackendError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "DuplicateBackendError",
    "PluginError",
]


class BackendError(Exception):
    """Base class of every error raised by ``bitnet_sdk.backends``."""


class BackendNotFoundError(BackendError, LookupError):
    """No backend of the requested name is registered (or its plugin failed)."""


class BackendUnavailableError(BackendError, RuntimeError):
    """A backend exists but cannot serve the request (device, op, probe or factory failure)."""


class DuplicateBackendError(BackendError, ValueError):
    """Two specs claim the same backend name; the first one registered is kept."""


@dataclass(frozen=True)
class PluginError:
    """A plugin failure that was reported and skipped instead of crashing the host.

    ``stage`` says where it happened: ``"import"`` (loading the entry point),
    ``"validate"`` (pluggy rejected its hooks), ``"register"``, ``"choose"`` or
    ``"selected"`` (inside that hook). ``error`` is ``repr(exception)``.
    """

    plugin: str
    stage: str
    error: str
    distribution: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def __str__(self) -> str:
        dist = f" ({self.distribution})" if self.distribution else ""
        return f"plugin {self.plugin!r}{dist} failed at {self.stage}: {self.error}"
