"""BitNet b1.58 ternary quantization and the reference ternary matmul."""

from __future__ import annotations

from bitnet_sdk.ternary.reference import (
    EPS,
    TernaryTensor,
    dequantize,
    float_linear,
    quantize_activations,
    quantize_weights,
    ternary_linear,
    ternary_matmul_int,
)

__all__ = [
    "EPS",
    "TernaryTensor",
    "dequantize",
    "float_linear",
    "quantize_activations",
    "quantize_weights",
    "ternary_linear",
    "ternary_matmul_int",
]
