"""Instruction-set variants of the kernels, host detection and selection.

Each ``Isa`` says how to generate code (LLVM CPU name and feature string, the
vector width in bytes, which dot-product instruction the GEMM inner loop uses,
and the register tiles) and what the host must have to run it. The code of a
variant depends only on the variant, not on the machine that compiles it, so
an object file built for ``neondot`` on x86 is the one an Arm host would JIT.

Selection: an explicit name (constructor argument) wins, then the
``BITNET_LLVM_ISA`` variable, then the best variant the host supports
(``auto``). Forcing a variant the host cannot execute raises
``UnsupportedIsaError`` rather than dying later of SIGILL.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

__all__ = [
    "ISAS",
    "ISA_ENV",
    "Isa",
    "UnsupportedIsaError",
    "host_arch",
    "host_cpu",
    "host_features",
    "select_isa",
    "supported_isas",
]

#: Environment variable forcing one variant (``avx2``, ``avxvnni``, ``avx512``,
#: ``avx512vnni``, ``neon``, ``neondot``, ``generic``) or ``auto``.
ISA_ENV = "BITNET_LLVM_ISA"


class UnsupportedIsaError(RuntimeError):
    """The requested variant is unknown or cannot run on this host."""


@dataclass(frozen=True)
class Isa:
    """One code-generation variant.

    ``dot`` is the inner-product strategy of the GEMM kernels:

    * ``vnni``: ``vpdpbusd`` (u8 × s8 → i32, 4 products per lane): EVEX-encoded
      512-bit with AVX512-VNNI, VEX-encoded 256-bit with AVX-VNNI (Alder Lake
      and later Intel cores without AVX-512);
    * ``maddubs``: ``vpmaddubsw`` (u8 × s8 → i16 pairs) then ``vpmaddwd``;
    * ``sdot``: AArch64 ``sdot`` (s8 × s8 → i32, 4 products per lane);
    * ``portable``: plain widening multiplies, lowered by LLVM for any target.

    ``gemv_tile``/``gemm_tile`` are ``(rows, tokens)`` register tiles; rows
    must divide the layout's row group (4).
    """

    name: str
    arch: str  # "x86_64", "aarch64" or "host" (portable code for whatever runs it)
    cpu: str
    features: str
    vector_bytes: int
    dot: str
    gemv_tile: tuple[int, int]
    gemm_tile: tuple[int, int]
    requires: frozenset[str]

    def triple(self) -> str:
        """LLVM target triple: the process triple for native use of ``host`` variants."""
        arch = host_arch() if self.arch == "host" else self.arch
        return f"{arch}-unknown-linux-gnu" if arch != host_arch() else _process_triple()

    def codegen_cpu(self) -> str:
        """LLVM CPU name to generate code for (baseline of the architecture for ``generic``)."""
        if self.cpu:
            return self.cpu
        return "x86-64" if host_arch() == "x86_64" else "generic"

    def codegen_features(self) -> str:
        if self.features or self.arch != "host":
            return self.features
        return "+neon" if host_arch() == "aarch64" else ""

    @property
    def float_lanes(self) -> int:
        """float32 lanes per vector, for the element-wise kernels."""
        return self.vector_bytes // 4


ISAS: Mapping[str, Isa] = {
    isa.name: isa
    for isa in (
        Isa("avx512vnni", "x86_64", "x86-64-v4", "+avx512vnni", 64, "vnni", (4, 1), (4, 4),
            frozenset({"avx512f", "avx512bw", "avx512vnni"})),
        Isa("avxvnni", "x86_64", "x86-64-v3", "+avxvnni", 32, "vnni", (4, 1), (2, 4),
            frozenset({"avx2", "fma", "avxvnni"})),
        Isa("avx512", "x86_64", "x86-64-v4", "", 64, "maddubs", (4, 1), (2, 4),
            frozenset({"avx512f", "avx512bw"})),
        Isa("avx2", "x86_64", "x86-64-v3", "", 32, "maddubs", (4, 1), (2, 4),
            frozenset({"avx2", "fma"})),
        Isa("neondot", "aarch64", "generic", "+neon,+dotprod", 16, "sdot", (4, 1), (4, 4),
            frozenset({"neon", "dotprod"})),
        Isa("neon", "aarch64", "generic", "+neon", 16, "portable", (4, 1), (2, 2),
            frozenset({"neon"})),
        Isa("generic", "host", "", "", 16, "portable", (4, 1), (2, 2), frozenset()),
    )
}

#: Preference order of ``auto`` per architecture.
_PREFERENCE = {
    "x86_64": ("avx512vnni", "avxvnni", "avx512", "avx2", "generic"),
    "aarch64": ("neondot", "neon", "generic"),
}


@cache
def _process_triple() -> str:
    import llvmlite.binding as llvm

    return str(llvm.get_process_triple())


def host_arch() -> str:
    """``x86_64`` or ``aarch64`` (``arm64`` on macOS is reported as ``aarch64``)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


@cache
def host_cpu() -> str:
    """LLVM's name of the host CPU (``znver4``, ``skylake-avx512``, ``neoverse-n1``, ...)."""
    import llvmlite.binding as llvm

    return str(llvm.get_host_cpu_name())


@cache
def host_features() -> frozenset[str]:
    """Features LLVM reports as enabled on the host (OS support for the state included)."""
    import llvmlite.binding as llvm

    try:
        fmap = llvm.get_host_cpu_features()
    except RuntimeError:  # LLVM cannot tell on some hosts: assume the architecture baseline
        return frozenset({"neon"} if host_arch() == "aarch64" else ())
    return frozenset(name for name, on in fmap.items() if on)


def supported_isas(features: frozenset[str] | None = None, arch: str | None = None) -> list[str]:
    """Variants a host can execute, best first (default: this host's features and arch)."""
    feats = host_features() if features is None else features
    order = _PREFERENCE.get(arch or host_arch(), ("generic",))
    return [n for n in order if ISAS[n].requires <= feats]


def select_isa(
    requested: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    features: frozenset[str] | None = None,
    arch: str | None = None,
) -> Isa:
    """The variant to run: ``requested``, else ``$BITNET_LLVM_ISA``, else the best supported.

    ``features``/``arch`` describe the host (default: this one, from LLVM).
    """
    env = os.environ if environ is None else environ
    name = (requested or env.get(ISA_ENV, "") or "auto").strip().lower()
    supported = supported_isas(features, arch)
    if name == "auto":
        if not supported:
            raise UnsupportedIsaError(f"no kernel variant runs on architecture {arch or host_arch()!r}")
        return ISAS[supported[0]]
    if name not in ISAS:
        raise UnsupportedIsaError(f"unknown kernel variant {name!r}; known: {sorted(ISAS)}")
    if name not in supported:
        missing = sorted(ISAS[name].requires - (host_features() if features is None else features))
        raise UnsupportedIsaError(
            f"kernel variant {name!r} cannot run on this host ({arch or host_arch()}): "
            f"missing {missing or 'architecture'}; supported here: {supported}"
        )
    return ISAS[name]
