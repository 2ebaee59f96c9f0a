"""Fixtures of the kernel tests: one compiled library per variant this host can run."""

from __future__ import annotations

import pytest
from bitnet_kernels.isa import ISAS, supported_isas
from bitnet_kernels.library import KernelLibrary

_built: dict[tuple[str, int], KernelLibrary] = {}


def native_isas() -> list[str]:
    """Every variant of this host's architecture (unsupported ones are skipped by ``library``)."""
    from bitnet_kernels.isa import host_arch

    return [n for n, isa in ISAS.items() if isa.arch in (host_arch(), "host")]


def library(isa_name: str, threads: int = 2) -> KernelLibrary:
    """A library for ``isa_name`` compiled once per test session (no disk cache)."""
    if isa_name not in supported_isas():
        pytest.skip(f"this host cannot execute {isa_name!r} (supported: {supported_isas()})")
    key = (isa_name, threads)
    if key not in _built:
        _built[key] = KernelLibrary(isa_name, threads, use_cache=False)
    return _built[key]


@pytest.fixture(params=native_isas())
def lib(request: pytest.FixtureRequest) -> KernelLibrary:
    return library(request.param)
