"""Fixtures of the kernel tests: one compiled library per variant this host can run."""

from __future__ import annotations

import pytest
from bitnet_kernels.isa import supported_isas
from bitnet_kernels.library import KernelLibrary

_built: dict[tuple[str, int], KernelLibrary] = {}


def native_isas() -> list[str]:
    """The variants this host executes. The others are proven by the emulation tests
    (``test_neon_qemu``, ``test_x86_qemu``) and, for AVX-VNNI, ``test_avxvnni``."""
    return supported_isas()


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
