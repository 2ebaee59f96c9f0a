"""``MlxBackend``: BitNet's hot ops on Apple's MLX, on the CPU or (with Metal) the GPU.

Every public op is one round trip: one numpy → MLX conversion per input, the
MLX graph (compiled where it helps, see ``kernels``), one MLX → numpy view of
the result. Weights stay packed 2-bit codes in MLX memory (``packing``) and
are unpacked inside the computation, never expanded at load.

MLX evaluation is not safe to run from several threads at once (process-wide
encoder state; see ml-explore/mlx#2067), and the runtime calls backends from
executor threads, so all MLX work in the process is serialized by one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import mlx.core as mx
import numpy as np

from bitnet_mlx import layers as L
from bitnet_mlx.capabilities import CAPABILITIES
from bitnet_mlx.kernels import LinearKernels
from bitnet_mlx.packing import PackedTernary, pack_ternary
from bitnet_sdk.backends import Backend, BackendUnavailableError
from bitnet_sdk.ternary import TernaryTensor

__all__ = ["DEFAULT_QMM_MAX_N", "DEVICES", "MlxBackend"]

#: Devices this backend knows, as the host names them.
DEVICES = {"cpu": mx.cpu, "gpu": mx.gpu}
#: Token counts above this take the unpack + float32 matmul path instead of
#: ``mx.quantized_matmul`` (``None``: never). MLX's Linux CPU build links the
#: reference BLAS, whose float32 GEMM loses to MLX's own quantized GEMM at every
#: size we measured (``docs/mlx.md``), so the default is ``None`` on every device;
#: an MLX linked to a fast BLAS can pass e.g. ``qmm_max_n=8``.
DEFAULT_QMM_MAX_N: int | None = None

_MLX_LOCK = threading.RLock()


def _f32(a: np.ndarray) -> mx.array:
    """The single numpy → MLX conversion of a float input (call inside ``_session``)."""
    return mx.array(np.ascontiguousarray(a, dtype=np.float32))


class MlxBackend(Backend):
    """MLX backend: packed 2-bit ternary weights, exact int32 matmul, fused layer ops."""

    name = "mlx"
    capabilities = CAPABILITIES

    def __init__(
        self, device: str = "cpu", *, compile: bool = True, qmm_max_n: int | None = DEFAULT_QMM_MAX_N
    ) -> None:
        """``compile=False`` runs the graphs eagerly; ``qmm_max_n`` picks the
        accumulation path by token count (see ``DEFAULT_QMM_MAX_N``)."""
        if device not in DEVICES:
            raise BackendUnavailableError(f"mlx backend: unknown device {device!r} (cpu, gpu)")
        if device == "gpu" and not mx.metal.is_available():
            raise BackendUnavailableError("mlx backend: device 'gpu' needs Metal (Apple silicon)")
        super().__init__(device, variant=f"mlx {mx.__version__}" + (" metal" if device == "gpu" else ""))  # type: ignore[attr-defined]  # mlx.core's stubs omit __version__
        self._device = mx.Device(DEVICES[device])
        self._kernels = LinearKernels(compile=compile, qmm_max_n=qmm_max_n)

    @contextmanager
    def _session(self) -> Iterator[None]:
        """Hold the process-wide MLX lock and make this device the default stream.

        Conversions happen inside too (MLX allocates). Results leave as
        ``np.asarray(result)``: evaluation, then a numpy view of the MLX
        buffer, no copy.
        """
        with _MLX_LOCK, mx.stream(self._device):
            yield

    # -- ternary linear algebra ---------------------------------------------------

    def prepare_weights(self, t: TernaryTensor) -> PackedTernary:
        """Pack ``t`` into 2-bit codes (16 per uint32) plus scales, in MLX memory."""
        if not isinstance(t, TernaryTensor):
            raise TypeError(f"prepare_weights takes a TernaryTensor, got {type(t).__name__}")
        with self._session():
            return pack_ternary(t, self.device)

    def matmul(self, w: PackedTernary, x: np.ndarray) -> np.ndarray:
        """BitNet linear ``x [n, cols]`` → float32 ``[n, rows]``, as ``ternary_linear``."""
        _check(w, x, "x")
        if x.shape[0] == 0:
            return np.zeros((0, w.shape[0]), dtype=np.float32)
        with self._session():
            return np.asarray(self._kernels.linear(w, _f32(x)))

    def matmul_int(self, w: PackedTernary, xq: np.ndarray) -> np.ndarray:
        """Exact int32 ``xq · qᵀ`` for int8 ``xq [n, cols]``, as ``ternary_matmul_int``."""
        _check(w, xq, "xq")
        if xq.dtype != np.int8:
            raise TypeError(f"xq must be int8, got {xq.dtype}")
        if xq.shape[0] == 0:
            return np.zeros((0, w.shape[0]), dtype=np.int32)
        with self._session():
            return np.asarray(self._kernels.linear_int(w, mx.array(np.ascontiguousarray(xq))))

    def quantize_activations(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-token absmax int8 ``(x_q [n, k], a [n])``, bit-identical to the reference."""
        if np.ndim(x) != 2:
            raise ValueError(f"activations must be 2-D [tokens, features], got shape {np.shape(x)}")
        with self._session():
            xq, a = self._kernels.quantize(_f32(x))
            return np.asarray(xq), np.asarray(a)

    # -- float layer ops ------------------------------------------------------------

    def rms_norm(self, x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
        with self._session():
            return np.asarray(L.rms_norm(_f32(x), _f32(weight), float(eps)))

    def rope(self, x: np.ndarray, positions: np.ndarray, theta: float, neox: bool) -> np.ndarray:
        if np.ndim(x) != 3 or np.shape(positions) != (np.shape(x)[0],):
            raise ValueError(f"rope takes x [n, h, d] and positions [n], got {np.shape(x)}, {np.shape(positions)}")
        with self._session():
            return np.asarray(L.rope(_f32(x), positions, theta, neox))

    def attention(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, q_positions: np.ndarray
    ) -> np.ndarray:
        if np.shape(q)[1] % np.shape(k)[1] != 0:
            raise ValueError(f"query heads {np.shape(q)[1]} not a multiple of kv heads {np.shape(k)[1]}")
        with self._session():
            return np.asarray(L.attention(_f32(q), _f32(k), _f32(v), q_positions))

    def softmax(self, x: np.ndarray, axis: int = -1) -> np.ndarray:
        with self._session():
            return np.asarray(L.softmax(_f32(x), axis))

    def silu(self, x: np.ndarray) -> np.ndarray:
        with self._session():
            return np.asarray(L.silu(_f32(x)))

    def relu2(self, x: np.ndarray) -> np.ndarray:
        with self._session():
            return np.asarray(L.relu2(_f32(x)))


def _check(w: object, x: np.ndarray, what: str) -> None:
    if not isinstance(w, PackedTernary):
        raise TypeError(f"weights were not prepared by the mlx backend: {type(w).__name__}")
    if np.ndim(x) != 2 or np.shape(x)[1] != w.shape[1]:
        raise ValueError(f"{what} must be [n, {w.shape[1]}], got shape {np.shape(x)}")
