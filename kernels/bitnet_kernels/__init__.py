"""llvmlite-JIT BitNet kernels: ternary GEMV/GEMM, activation quantization, element-wise ops.

Typical use::

    from bitnet_kernels import KernelLibrary
    lib = KernelLibrary.shared()            # best ISA here; BITNET_LLVM_ISA / BITNET_NUM_THREADS
    w = lib.pack(t.q, t.scale)              # once per weight
    y = lib.matmul(w, x)                    # == bitnet_sdk.ternary.ternary_linear(t, x)

Importing this package generates and compiles nothing; a ``KernelLibrary``
compiles its variant's module on construction (or loads it from the disk
cache, see ``bitnet_kernels.compiler``).
"""

from __future__ import annotations

from bitnet_kernels.compiler import CACHE_ENV, CompileStats, cache_dir, emit_object, jit_module
from bitnet_kernels.isa import ISA_ENV, ISAS, Isa, UnsupportedIsaError, select_isa, supported_isas
from bitnet_kernels.layout import HeadMatrix, PackedTernary, pack_ternary, unpack_ternary
from bitnet_kernels.library import KernelLibrary, QuantizedActivations
from bitnet_kernels.module import KERNELS, build_kernel_module
from bitnet_kernels.threads import THREADS_ENV

__all__ = [
    "CACHE_ENV",
    "ISAS",
    "ISA_ENV",
    "KERNELS",
    "THREADS_ENV",
    "CompileStats",
    "HeadMatrix",
    "Isa",
    "KernelLibrary",
    "PackedTernary",
    "QuantizedActivations",
    "UnsupportedIsaError",
    "build_kernel_module",
    "cache_dir",
    "emit_object",
    "jit_module",
    "pack_ternary",
    "select_isa",
    "supported_isas",
    "unpack_ternary",
]
