"""The set of kernels compiled together for one ISA variant, as one LLVM module.

Every exported symbol is prefixed ``bitnet_``; ``KERNELS`` lists them with the
C argument types (for ``ctypes`` and for the C test harness of the cross
tests). ``gemv_*`` use the ISA's one-token tile, ``gemm_*`` its multi-token
tile; both have the GEMM signature of ``bitnet_kernels.gemm``. ``head_*`` are the
output-head kernels of ``bitnet_kernels.head``, one per weight element type.
"""

from __future__ import annotations

import ctypes

from llvmlite import ir

from bitnet_kernels.elementwise import build_relu2, build_rms_norm, build_silu, build_softmax
from bitnet_kernels.gemm import GemmSpec, build_gemm
from bitnet_kernels.head import HEAD_ELEMS, build_head
from bitnet_kernels.isa import Isa
from bitnet_kernels.pack import build_pack
from bitnet_kernels.quant import build_quantize

__all__ = ["KERNELS", "KERNEL_RESULTS", "PREFIX", "build_kernel_module"]

PREFIX = "bitnet_"
_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float

#: Kernel name (without prefix) -> ctypes argument types.
KERNELS: dict[str, tuple[type, ...]] = {
    "gemv_i32": (_P,) * 6 + (_I,) * 7,
    "gemv_f32": (_P,) * 6 + (_I,) * 7,
    "gemm_i32": (_P,) * 6 + (_I,) * 7,
    "gemm_f32": (_P,) * 6 + (_I,) * 7,
    "quantize": (_P, _I, _I, _P, _I, _P, _P, _I, _I),
    "rms_norm": (_P, _P, _P, _I, _F, _I, _I),
    "softmax": (_P, _P, _I, _I, _I),
    "silu": (_P, _P, _I, _I),
    "relu2": (_P, _P, _I, _I),
    "pack": (_P, _I, _I, _I, _P, _I, _I, _I),
    **{f"head_{elem}": (_P,) * 4 + (_I,) * 5 for elem in HEAD_ELEMS},
}
#: Result types of the kernels that return something (the others are ``void``).
KERNEL_RESULTS: dict[str, type] = {"pack": ctypes.c_int32}


def build_kernel_module(isa: Isa) -> ir.Module:
    """All kernels of ``isa`` in one module (no target set: the compiler adds it)."""
    module = ir.Module(name=f"bitnet_kernels_{isa.name}")
    for out in ("i32", "f32"):
        rows, toks = isa.gemv_tile
        build_gemm(module, isa, GemmSpec(f"{PREFIX}gemv_{out}", rows, toks, out))
        rows, toks = isa.gemm_tile
        build_gemm(module, isa, GemmSpec(f"{PREFIX}gemm_{out}", rows, toks, out))
    build_quantize(module, isa, f"{PREFIX}quantize")
    build_rms_norm(module, isa, f"{PREFIX}rms_norm")
    build_softmax(module, isa, f"{PREFIX}softmax")
    build_silu(module, isa, f"{PREFIX}silu")
    build_relu2(module, isa, f"{PREFIX}relu2")
    build_pack(module, isa, f"{PREFIX}pack")
    for elem in HEAD_ELEMS:
        build_head(module, isa, f"{PREFIX}head_{elem}", elem)
    return module
