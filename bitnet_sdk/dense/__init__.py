"""Ternary dense models: feed-forward networks converted from ONNX, run with BitNet layers.

``bitnet_sdk.dense.load(path).predict(inputs)`` (also reached through ``bitnet_sdk.load`` for
files whose architecture is ``bitnet-dense``). Files are written by
``bitnet_sdk.quantization.quantize("model.onnx", "model.gguf")``.
"""

from __future__ import annotations

from bitnet_sdk.dense.format import ARCH, dense_problems
from bitnet_sdk.dense.model import DenseModel, Prediction, load

__all__ = ["ARCH", "DenseModel", "Prediction", "dense_problems", "load"]
