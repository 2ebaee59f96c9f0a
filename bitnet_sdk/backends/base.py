"""The backend object: what a backend plugin hands the runtime.

Hooks (``hookspecs.py``) only *announce* backends; the hot path calls plain
methods on a ``Backend`` instance, because a pluggy hook call per matmul would
cost more than the matmul for one token.

Contract for plugin authors
---------------------------
Required (abstract): ``prepare_weights``, ``matmul``.
Everything else has a numpy reference implementation here, so a backend only
overrides what it does better. ``capabilities`` must name exactly the ops the
backend implements natively (the runtime and ``bitnet backends`` report it).

Exactness: ``matmul_int`` must equal ``bitnet_sdk.ternary.ternary_matmul_int``
bit for bit; ``matmul`` must equal ``bitnet_sdk.ternary.ternary_linear``
within float32 rounding of the final rescale.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Protocol

import numpy as np

from bitnet_sdk.backends import ops
from bitnet_sdk.ternary import TernaryTensor, quantize_activations

__all__ = ["FUSED_OPS", "OPTIONAL_OPS", "REQUIRED_OPS", "Backend", "ForwardStep"]

REQUIRED_OPS = ("prepare_weights", "matmul")
OPTIONAL_OPS = (
    "matmul_int",
    "quantize_activations",
    "rms_norm",
    "rope",
    "attention",
    "softmax",
    "silu",
    "relu2",
    "head",
)

#: Optional fused capabilities: no per-op fallback, the runtime uses them only when offered.
FUSED_OPS = ("compile_forward",)


class ForwardStep(Protocol):
    """A whole forward pass for one loaded model (see ``Backend.compile_forward``)."""

    def __call__(self, token_ids: np.ndarray, start_pos: int, cache: Any, last_only: bool) -> np.ndarray:
        """Logits for int64 ``token_ids [n]`` (already checked) at ``start_pos ..``, exactly as
        ``bitnet_sdk.model.llm.forward`` defines them, writing ``cache`` the same way."""


class Backend(abc.ABC):
    """A compute backend bound to one device.

    ``name`` is the registry name (``numpy``, ``llvm``, ``mlx``, ...); ``device``
    is the device it runs on (``cpu``, ``gpu``); ``variant`` is a free-form detail
    (e.g. the ISA a JIT picked).
    """

    name: ClassVar[str] = "abstract"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: Version of what ``prepare_weights``/``prepare_head`` produce, for the weight cache
    #: (``bitnet_sdk.model.weight_cache``); ``None``: prepared weights are never cached.
    #: Change it whenever the prepared layout (or an option shaping it) changes.
    layout_version: str | None = None

    def __init__(self, device: str = "cpu", variant: str = "") -> None:
        self.device = device
        self.variant = variant

    def __repr__(self) -> str:
        extra = f", variant={self.variant!r}" if self.variant else ""
        return f"<{type(self).__name__} {self.name} device={self.device!r}{extra}>"

    # -- ternary linear algebra -------------------------------------------------

    @abc.abstractmethod
    def prepare_weights(self, t: TernaryTensor) -> Any:
        """Repack a ternary tensor once into this backend's layout.

        Called once per weight at model load. The result is opaque to the caller
        and is only ever passed back to ``matmul``/``matmul_int`` of the same
        backend. It must keep ``t.shape`` available as ``.shape`` (rows, cols).
        """

    @abc.abstractmethod
    def matmul(self, w: Any, x: np.ndarray) -> np.ndarray:
        """BitNet linear: ``x [n, cols]`` float32 → ``[n, rows]`` float32.

        Quantizes ``x`` per token (``quantize_activations``), multiplies with
        int32 accumulation, rescales by ``scale[r] / a[n]``. ``n == 1`` is the
        GEMV (generation) case, ``n > 1`` the GEMM (prompt) case.
        """

    def matmul_int(self, w: Any, xq: np.ndarray) -> np.ndarray:
        """Exact ``int32 [n, rows]`` accumulations for int8 ``xq [n, cols]``.

        Used by exactness tests. Fallback: none (backends must implement it if
        they list it in ``capabilities``); the base raises NotImplementedError.
        """
        raise NotImplementedError(f"backend {self.name!r} does not expose matmul_int")

    def quantize_activations(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-token absmax int8 (see ``bitnet_sdk.ternary``). Fallback: numpy."""
        return quantize_activations(x)

    # -- the weight cache (optional: only with a ``layout_version``) --------------

    def prepared_arrays(self, w: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """Export a prepared weight as ``(json-able metadata, named arrays)`` for the cache.

        ``None`` means "do not cache this one" (e.g. a head that is already a
        view of the model file). Fallback: ``None``.
        """
        return None

    def prepared_from_arrays(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        """Rebuild a prepared weight from ``prepared_arrays``' output, whose arrays are now
        read-only views of the memory-mapped cache file (never write to them)."""
        raise NotImplementedError(f"backend {self.name!r} does not read a weight cache")

    # -- fused capability (optional) ----------------------------------------------

    def compile_forward(self, cfg: Any, weights: Any) -> ForwardStep | None:
        """A fused forward pass for one model's shapes and prepared weights, or ``None``.

        Called once per loaded model (``cfg`` is its ``ModelConfig``, ``weights``
        its ``ModelWeights`` in this backend's layout). A backend that can run a
        whole step in fewer, larger calls (a compiled module, a graph) returns
        a ``ForwardStep``; the runtime then calls it instead of the per-op
        ``bitnet_sdk.model.llm.forward``, which stays the readable reference the
        step must agree with (within float32 rounding). List
        ``"compile_forward"`` in ``capabilities`` when offering it. Fallback:
        ``None``, every op is called one by one.
        """
        return None

    # -- the output head -----------------------------------------------------------

    def prepare_head(self, w: np.ndarray) -> Any:
        """Prepare the output head ``w [vocab, d_model]`` once at load.

        ``w`` arrives in the file's float type (float16, bfloat16 as
        ``ml_dtypes.bfloat16``, or float32), usually
        as a read-only view of the memory-mapped file; the result is opaque and
        only passed back to ``head``. Fallback: a float32 copy (for float16
        files that doubles the bytes every decode step reads, so backends
        should keep the file's type when they can).
        """
        return np.asarray(w, dtype=np.float32)

    def head(self, w: Any, x: np.ndarray) -> np.ndarray:
        """Logits: float32 ``x [n, d_model]`` times the prepared head → ``[n, vocab]`` float32.

        Fallback: a float32 product, row by row (``ops.row_products``). Native
        versions must agree within float32 rounding for a head kept in the
        file's type; an approximate head (e.g. int8) must be opt-in and
        documented with its measured error. Every version must compute a row
        the same way whatever ``n``: a batched sequence must get exactly the
        logits it gets alone (the batching scheduler's determinism).
        """
        return ops.row_products(np.ascontiguousarray(x, dtype=np.float32),
                                np.asarray(w, dtype=np.float32))

    # -- float layer ops (fallback: bitnet_sdk.backends.ops) ------------------------

    def rms_norm(self, x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
        return ops.rms_norm(x, weight, eps)

    def rope(self, x: np.ndarray, positions: np.ndarray, theta: float, neox: bool) -> np.ndarray:
        return ops.rope(x, positions, theta, neox)

    def attention(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, q_positions: np.ndarray
    ) -> np.ndarray:
        return ops.attention(q, k, v, q_positions)

    def softmax(self, x: np.ndarray, axis: int = -1) -> np.ndarray:
        return ops.softmax(x, axis)

    def silu(self, x: np.ndarray) -> np.ndarray:
        return ops.silu(x)

    def relu2(self, x: np.ndarray) -> np.ndarray:
        return ops.relu2(x)
