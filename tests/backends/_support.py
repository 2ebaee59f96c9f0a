"""In-process test plugins: small objects with hook implementations, no entry points."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bitnet_sdk.backends import (
    Backend,
    BackendHost,
    BackendInfo,
    BackendRegistry,
    BackendSpec,
    hookimpl,
)
from bitnet_sdk.ternary import TernaryTensor, ternary_linear, ternary_matmul_int


class FakeBackend(Backend):
    """A correct numpy backend whose ``name`` is set per instance (for many fake specs)."""

    capabilities = frozenset({"prepare_weights", "matmul", "matmul_int"})

    def __init__(self, device: str, name: str) -> None:
        super().__init__(device)
        self.name = name  # type: ignore[misc]  # instance attribute shadows the ClassVar on purpose

    def prepare_weights(self, t: TernaryTensor) -> TernaryTensor:
        return t

    def matmul(self, w: TernaryTensor, x: np.ndarray) -> np.ndarray:
        return ternary_linear(w, x)

    def matmul_int(self, w: TernaryTensor, xq: np.ndarray) -> np.ndarray:
        return ternary_matmul_int(w.q, xq)


def fake_spec(
    name: str,
    priority: int = 0,
    devices: Sequence[str] = ("cpu",),
    capabilities: Sequence[str] = ("prepare_weights", "matmul"),
    factory: Callable[[str], Backend] | None = None,
    probe: Callable[[], Sequence[str]] | None = None,
) -> BackendSpec:
    return BackendSpec(
        name=name,
        factory=factory or (lambda device: FakeBackend(device, name)),
        priority=priority,
        devices=probe or (lambda: list(devices)),
        capabilities=frozenset(capabilities),
        description=f"fake {name}",
        version="1.0",
    )


class SpecPlugin:
    """A plugin registering the given specs; counts how often its hook ran."""

    def __init__(self, *specs: BackendSpec) -> None:
        self.specs = specs
        self.register_calls = 0

    @hookimpl
    def bitnet_register_backends(self, registry: BackendRegistry) -> None:
        self.register_calls += 1
        for spec in self.specs:
            registry.add(spec)


class ChooserPlugin:
    """Answers ``bitnet_choose_backend`` with a fixed value (or raises it) and logs its calls."""

    def __init__(self, answer: str | Exception | None) -> None:
        self.answer = answer
        self.calls: list[tuple[str | None, str, list[str]]] = []

    @hookimpl
    def bitnet_choose_backend(
        self, op: str | None, device: str, candidates: list[BackendInfo]
    ) -> str | None:
        self.calls.append((op, device, [c.name for c in candidates]))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class ObserverPlugin:
    """Records ``bitnet_backend_selected`` notifications; raises if told to."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[tuple[Backend, str, str]] = []

    @hookimpl
    def bitnet_backend_selected(self, backend: Backend, info: BackendInfo, reason: str) -> None:
        self.seen.append((backend, info.name, reason))
        if self.fail:
            raise RuntimeError("observer exploded")


class UnknownHookPlugin:
    """Implements a hook that has no spec: pluggy's ``check_pending`` rejects it."""

    @hookimpl
    def bitnet_register_backendz(self, registry: BackendRegistry) -> None:  # typo on purpose
        raise AssertionError("never called")


def make_host(*plugins: Any, env: dict[str, str] | None = None) -> BackendHost:
    """A host with only ``plugins`` (named p0, p1, ...), no entry points, its own environ."""
    named = [(f"p{i}", p) for i, p in enumerate(plugins)]
    return BackendHost(entry_points=False, plugins=named, environ=env if env is not None else {})
