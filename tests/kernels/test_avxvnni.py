"""The ``avxvnni`` variant (256-bit ``vpdpbusd``, VEX-encoded) without an AVX-VNNI machine.

Neither this kind of host (AVX-512 VNNI cores execute only the EVEX form)
nor qemu 7.2 (no AVX-VNNI in TCG) can run VEX ``vpdpbusd``. So the variant
is proven in two halves: the very same IR compiled for AVX512-VNNI + VL
(EVEX-encoded 256-bit ``vpdpbusd``, identical semantics) runs natively and
must match the reference; and the ``avxvnni`` object must contain only
VEX-encoded ``vpdpbusd`` on ymm registers and no EVEX instruction at all.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bitnet_kernels.compiler import emit_object
from bitnet_kernels.isa import ISAS, host_features
from bitnet_kernels.library import KernelLibrary
from bitnet_kernels.module import build_kernel_module

from bitnet_sdk.ternary import TernaryTensor, ternary_linear, ternary_matmul_int

pytestmark = pytest.mark.skipif(
    __import__("platform").machine() not in ("x86_64", "AMD64"), reason="x86-64 variant"
)


def test_same_ir_with_evex_encoding_matches_the_reference() -> None:
    if not {"avx512vnni", "avx512vl"} <= host_features():
        pytest.skip("needs AVX512-VNNI with VL to run the EVEX form of 256-bit vpdpbusd")
    evex = dataclasses.replace(ISAS["avxvnni"], cpu="x86-64-v4", features="+avx512vnni")
    lib = KernelLibrary(evex, 2, use_cache=False)
    rng = np.random.default_rng(17)
    for rows, k, n in [(1, 1, 1), (13, 513, 3), (37, 2000, 9), (900, 2560, 4)]:
        q = rng.integers(-1, 2, size=(rows, k)).astype(np.int8)
        scale = rng.uniform(0.1, 2.0, rows).astype(np.float32)
        x = (rng.standard_normal((n, k)) * 7).astype(np.float32)
        xq = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
        p = lib.pack(q, scale)
        np.testing.assert_array_equal(lib.matmul_int(p, xq), ternary_matmul_int(q, xq))
        np.testing.assert_array_equal(lib.matmul(p, x), ternary_linear(TernaryTensor(q, scale), x))


def test_object_uses_vex_vpdpbusd_and_no_evex(tmp_path: Path) -> None:
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("needs objdump (binutils) to disassemble")
    obj = tmp_path / "avxvnni.o"
    obj.write_bytes(emit_object(build_kernel_module(ISAS["avxvnni"]), ISAS["avxvnni"]))
    out = subprocess.run([objdump, "-d", str(obj)], check=True, capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if line.count("\t") >= 2]  # address, bytes, instruction
    dots = [line for line in lines if "vpdpbusd" in line]
    assert dots and all("{vex}" in line and "%ymm" in line for line in dots), dots[:3]
    evex = [line for line in lines if "\t62 " in line or "%zmm" in line or "%k" in line]
    assert not evex, evex[:3]  # 0x62 opens every EVEX instruction
