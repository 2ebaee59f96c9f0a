"""Variant selection: explicit name > BITNET_LLVM_ISA > best supported; impossible requests fail."""

from __future__ import annotations

import pytest
from bitnet_kernels.isa import ISA_ENV, ISAS, UnsupportedIsaError, select_isa, supported_isas

ZEN4 = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512vnni"})
HASWELL = frozenset({"avx2", "fma"})
GRAVITON2 = frozenset({"neon", "dotprod"})
CORTEX_A53 = frozenset({"neon"})


@pytest.mark.parametrize(
    ("features", "arch", "best"),
    [(ZEN4, "x86_64", "avx512vnni"), (ZEN4 - {"avx512vnni"}, "x86_64", "avx512"),
     (HASWELL, "x86_64", "avx2"), (frozenset(), "x86_64", "generic"),
     (GRAVITON2, "aarch64", "neondot"), (CORTEX_A53, "aarch64", "neon"),
     (frozenset(), "riscv64", "generic")],
)  # fmt: skip
def test_auto_picks_the_best_supported(features: frozenset[str], arch: str, best: str) -> None:
    assert select_isa(None, {}, features=features, arch=arch).name == best
    assert supported_isas(features, arch)[0] == best


def test_explicit_beats_environment_beats_auto() -> None:
    env = {ISA_ENV: "avx2"}
    assert select_isa(None, env, features=ZEN4, arch="x86_64").name == "avx2"
    assert select_isa("generic", env, features=ZEN4, arch="x86_64").name == "generic"
    assert select_isa("auto", {ISA_ENV: "auto"}, features=ZEN4, arch="x86_64").name == "avx512vnni"
    assert select_isa(" AVX512 ", {}, features=ZEN4, arch="x86_64").name == "avx512"


def test_unsupported_and_unknown_variants_raise() -> None:
    with pytest.raises(UnsupportedIsaError, match=r"missing.*avx512vnni"):
        select_isa("avx512vnni", {}, features=HASWELL, arch="x86_64")
    with pytest.raises(UnsupportedIsaError, match="cannot run"):
        select_isa("neondot", {}, features=ZEN4, arch="x86_64")
    with pytest.raises(UnsupportedIsaError, match="unknown"):
        select_isa("sse9", {}, features=ZEN4, arch="x86_64")


def test_this_host_runs_its_choice() -> None:
    """The real host: whatever ``auto`` picks is in the supported list and has a triple."""
    isa = select_isa(None, {})
    assert isa.name in supported_isas()
    assert isa.triple().split("-")[0] in ("x86_64", "aarch64", "arm64")


def test_variant_tiles_fit_the_row_group() -> None:
    for isa in ISAS.values():
        assert 4 % isa.gemv_tile[0] == 0 and 4 % isa.gemm_tile[0] == 0, isa.name
        assert 64 % isa.vector_bytes == 0, isa.name


def test_avx_vnni_cores_without_avx512_get_the_vex_variant() -> None:
    alder_lake = HASWELL | {"avxvnni"}
    assert select_isa(None, {}, features=alder_lake, arch="x86_64").name == "avxvnni"
    assert select_isa(None, {}, features=ZEN4, arch="x86_64").name == "avx512vnni"
