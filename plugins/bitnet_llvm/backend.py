"""The ``llvm`` backend: BitNet ternary kernels JIT-compiled with llvmlite for this CPU.

Weights are repacked once (``prepare_weights``) into the 2-bit layout of
``bitnet_kernels.layout``; matmuls, activation quantization and the
element-wise ops run as native code on every core. ``variant`` is the
instruction set picked (``avx512vnni``, ``avx512``, ``avx2``, ``neondot``,
``neon`` or ``generic``): the best the host runs, or the one forced by the
``isa`` argument or ``BITNET_LLVM_ISA``. Threads: the ``num_threads``
argument, else ``BITNET_NUM_THREADS``, else every usable CPU.

Exactness: ``matmul_int`` and ``quantize_activations`` equal the reference
bit for bit; ``matmul`` too (same int32 sums, same float32 rescale order);
the element-wise ops agree within float32 rounding. ``attention`` (float32
caches) is the native kernel of ``bitnet_kernels.attention``, within float32
rounding of the numpy reference. ``compile_forward`` gives the compiled
one-call forward step (``fused.py``: decode tokens and prompt chunks).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from bitnet_kernels import HeadMatrix, KernelLibrary, PackedTernary
from bitnet_kernels.fused import FusedStepKernel

from bitnet_llvm.forward import LlvmForwardStep
from bitnet_llvm.fused import CompiledForwardStep, unsupported_reason
from bitnet_sdk.backends.base import REQUIRED_OPS, Backend
from bitnet_sdk.backends.errors import BackendUnavailableError
from bitnet_sdk.ternary import TernaryTensor

__all__ = ["COMPILED_STEP_ENV", "HEAD_ENV", "HEAD_KINDS", "LlvmBackend"]

log = logging.getLogger(__name__)

#: ``off`` keeps single-token steps on the per-op path (to compare, or to rule the compiled step out).
COMPILED_STEP_ENV = "BITNET_LLVM_COMPILED_STEP"

#: Environment variable choosing the output head's storage when ``head`` is not passed.
HEAD_ENV = "BITNET_LLVM_HEAD"
#: ``native``: the file's float type (F16/F32), exact to float32 rounding; ``int8``: rows
#: quantized to int8 with a scale each (a quarter of float32's bytes; see docs/benchmarks.md).
HEAD_KINDS = ("native", "int8")


class LlvmBackend(Backend):
    """llvmlite-JIT ternary kernels (AVX2, AVX-512/VNNI, NEON/sdot) on all CPU cores."""

    name = "llvm"
    capabilities = frozenset((*REQUIRED_OPS, "matmul_int", "quantize_activations", "rms_norm",
                              "softmax", "silu", "relu2", "head", "compile_forward"))  # fmt: skip

    def __init__(self, device: str = "cpu", *, isa: str | None = None, num_threads: int | None = None,
                 head: str | None = None) -> None:  # fmt: skip
        if device != "cpu":
            raise BackendUnavailableError(f"the llvm backend runs on 'cpu' only, not {device!r}")
        head = (head or os.environ.get(HEAD_ENV, "") or "native").strip().lower()
        if head not in HEAD_KINDS:
            raise BackendUnavailableError(f"{HEAD_ENV} / head must be one of {HEAD_KINDS}, not {head!r}")
        self.head_kind = head
        self.layout_version = f"packed2-rowgroup4-block256-v1;head={head}"
        self.kernels = KernelLibrary.shared(isa, num_threads)
        super().__init__(device, self.kernels.isa.name)

    @property
    def num_threads(self) -> int:
        return self.kernels.num_threads

    def prepare_weights(self, t: TernaryTensor) -> PackedTernary:
        """Repack into the kernels' 2-bit layout (``.shape`` is ``t.shape``)."""
        if not isinstance(t, TernaryTensor):
            raise TypeError(f"prepare_weights takes a TernaryTensor, got {type(t).__name__}")
        return self.kernels.pack(t.q, t.scale)

    def matmul(self, w: PackedTernary, x: np.ndarray) -> np.ndarray:
        """BitNet linear: float ``x [n, cols]`` → float32 ``[n, rows]``."""
        return self.kernels.matmul(w, x)

    def prepared_arrays(self, w: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """Packed ternary weights and an int8 head; a float head is a view of the file already."""
        if isinstance(w, PackedTernary):
            return {"kind": "ternary", "shape": list(w.shape)}, {"data": w.data, "scale": w.scale}
        if isinstance(w, HeadMatrix) and w.scale is not None:
            return {"kind": "head", "head": w.kind}, {"data": w.data, "scale": w.scale}
        return None

    def prepared_from_arrays(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        if meta.get("kind") == "ternary":
            rows, cols = meta["shape"]
            return PackedTernary(arrays["data"], arrays["scale"], (int(rows), int(cols)))
        if meta.get("kind") == "head":
            return HeadMatrix(arrays["data"], arrays["scale"], str(meta["head"]))
        raise ValueError(f"unknown prepared weight kind in the cache: {meta.get('kind')!r}")

    def compile_forward(self, cfg: Any, weights: Any) -> CompiledForwardStep | LlvmForwardStep | None:
        """The model's forward pass bound once to its weights and kernels.

        Single-token steps run the compiled step (``fused.py``: one native call, all
        threads inside, native barriers); prompt batches run the per-op step
        (``forward.py``), which is also the whole answer when the compiled step
        cannot take the model's shapes or ``BITNET_LLVM_COMPILED_STEP=off``.
        """
        if not weights.layers or not isinstance(weights.layers[0].wqkv, PackedTernary):
            return None  # weights prepared elsewhere: run per op
        per_op = LlvmForwardStep(self, cfg, weights)
        if os.environ.get(COMPILED_STEP_ENV, "").strip().lower() in ("0", "off", "false", "no"):
            return per_op
        kernel = FusedStepKernel.shared(self.kernels.isa)
        reason = unsupported_reason(kernel, cfg, weights)
        if reason is not None:
            log.info("compiled forward step not used", extra={"reason": reason})
            return per_op
        return CompiledForwardStep(self.kernels, kernel, per_op)

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, q_positions: np.ndarray) -> np.ndarray:
        """Native GQA (``bitnet_kernels.attention``): the compiled decode step's own code, so a
        token's values are the same per op, in a batch and in the compiled step. F16 caches and
        non-contiguous views take the numpy reference."""
        if k.dtype != np.float32 or v.dtype != np.float32 or not (k.flags.c_contiguous and v.flags.c_contiguous):
            return super().attention(q, k, v, q_positions)
        if q.ndim != 3 or k.ndim != 3 or q.shape[1] % k.shape[1] or q.shape[2] != k.shape[2] or k.shape != v.shape:
            return super().attention(q, k, v, q_positions)  # the reference raises on bad shapes
        return FusedStepKernel.shared(self.kernels.isa).attention(q, k, v, q_positions, self.num_threads)

    def prepare_head(self, w: np.ndarray) -> HeadMatrix:
        """Keep the head in the file's type (no copy), or int8 rows when ``head="int8"``."""
        return self.kernels.prepare_head(w, self.head_kind)

    def head(self, w: Any, x: np.ndarray) -> np.ndarray:
        """Native head kernel (F16C/AVX-512 conversion + FMA, or int8 rows × float)."""
        if not isinstance(w, HeadMatrix):  # weights loaded without prepare_head
            return super().head(w, x)
        return self.kernels.head(w, x)

    def matmul_int(self, w: PackedTernary, xq: np.ndarray) -> np.ndarray:
        """Exact int32 ``[n, rows]`` for int8 ``xq [n, cols]``."""
        return self.kernels.matmul_int(w, xq)

    def quantize_activations(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-token absmax int8, identical to ``bitnet_sdk.ternary.quantize_activations``."""
        return self.kernels.quantize_activations(x)

    def rms_norm(self, x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
        return self.kernels.rms_norm(x, weight, eps)

    def softmax(self, x: np.ndarray, axis: int = -1) -> np.ndarray:
        """Native over the last axis; other axes fall back to the numpy reference."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim and axis in (-1, x.ndim - 1):
            return self.kernels.softmax(x)
        return super().softmax(x, axis)

    def silu(self, x: np.ndarray) -> np.ndarray:
        return self.kernels.silu(x)

    def relu2(self, x: np.ndarray) -> np.ndarray:
        return self.kernels.relu2(x)
