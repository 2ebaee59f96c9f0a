"""The numpy reference backend: ``bitnet_sdk.ternary`` and ``bitnet_sdk.backends.ops`` as a ``Backend``.

Slow but exact by construction, it is what every other backend is compared
against and the backend of last resort (priority 0). Weights stay
``TernaryTensor`` (int8 codes plus float32 row scales): no repacking.
"""

from __future__ import annotations

import numpy as np

from bitnet_sdk.backends.base import OPTIONAL_OPS, REQUIRED_OPS, Backend
from bitnet_sdk.ternary import TernaryTensor, ternary_linear, ternary_matmul_int

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    """Reference numpy backend: exact int32 ternary matmul, float32 layer ops."""

    name = "numpy"
    capabilities = frozenset(REQUIRED_OPS + OPTIONAL_OPS)

    def prepare_weights(self, t: TernaryTensor) -> TernaryTensor:
        """Keep the ternary tensor as is (already this backend's layout)."""
        if not isinstance(t, TernaryTensor):
            raise TypeError(f"prepare_weights takes a TernaryTensor, got {type(t).__name__}")
        return t

    def matmul(self, w: TernaryTensor, x: np.ndarray) -> np.ndarray:
        """``ternary_linear(w, x)``: float32 ``[n, rows]`` for float ``x [n, cols]``."""
        _check(w, x, "x")
        return ternary_linear(w, x)

    def matmul_int(self, w: TernaryTensor, xq: np.ndarray) -> np.ndarray:
        """Exact int32 accumulations ``xq · qᵀ`` for int8 ``xq [n, cols]``."""
        _check(w, xq, "xq")
        if xq.dtype != np.int8:
            raise TypeError(f"xq must be int8, got {xq.dtype}")
        return ternary_matmul_int(w.q, xq)


def _check(w: object, x: np.ndarray, what: str) -> None:
    if not isinstance(w, TernaryTensor):
        raise TypeError(f"weights were not prepared by the numpy backend: {type(w).__name__}")
    if np.ndim(x) != 2 or np.shape(x)[1] != w.shape[1]:
        raise ValueError(f"{what} must be [n, {w.shape[1]}], got shape {np.shape(x)}")
