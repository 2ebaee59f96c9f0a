"""Well-conditioned synthetic models for numerical parity tests and benchmarks.

``build_model`` draws weights from a unit normal, as a generic random model
does. Quantized to ternary, every projection then has a scale near 0.8 and
its outputs grow with ``sqrt(fan_in)``: attention logits of such a model have
a standard deviation near 100, so softmax is a hard argmax and one int8
rounding difference anywhere can flip which key wins. Two correct
implementations then disagree by tens of percent at some positions, which
says nothing about either.

``build_conditioned_model`` writes the same kind of file with llama.cpp's
optional per-projection ``.scale`` tensors (``scale_tensors=True``: the ternary
codes carry scale 1) and sets each scale to ``1/sqrt(fan_in)``, the usual
initialisation, so activations stay O(1) through every layer, as in a
trained model. Only the one-element F32 ``.scale`` tensors are rewritten, in
place at the offsets the GGUF reader reports; the file stays a valid
llama.cpp ``bitnet`` model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType

from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.testing.synthetic import build_model

__all__ = ["build_conditioned_model"]


def build_conditioned_model(path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """``build_model(path, scale_tensors=True, **kwargs)``, scales set to ``1/sqrt(fan_in)``."""
    path = build_model(path, scale_tensors=True, **kwargs)
    edits: list[tuple[int, bytes]] = []
    mf = read_model(path)
    for name, info in mf.tensors.items():
        if not name.endswith(".scale"):
            continue
        if info.ggml_type != int(GGMLQuantizationType.F32) or info.n_elements != 1:
            raise ValueError(f"{name}: expected a one-element F32 tensor, got {info.type_name} {info.shape}")
        fan_in = mf.tensor_info(name.removesuffix(".scale") + ".weight").shape[1]
        edits.append((info.offset, np.float32(1.0 / np.sqrt(fan_in)).tobytes()))
    del mf  # release the memory map before writing
    with open(path, "r+b") as f:
        for offset, value in edits:
            f.seek(offset)
            f.write(value)
    return path
