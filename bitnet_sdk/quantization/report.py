"""The quantization report: sizes, time, and accuracy measured on the written file's numbers.

Every accuracy figure compares the source weights with what the output file really holds (the
packed codes and the scales as stored, fp16 rounding included):

* per layer: relative weight error ``‖W − Ŵ‖ / ‖W‖`` (float64) and the cosine similarity between
  the layer's float output ``x · Wᵀ`` and the ternary layer's output (per-token int8 activations,
  as the runtime computes) on calibration inputs ``x`` — random normal rows unless supplied;
* dense models: prediction agreement between the original float ONNX graph (run by
  ``onnx.reference``) and the ternary model, on supplied or generated inputs;
* language models: perplexity of the quantized model on a given text (runtime forward), and of
  the source weights in float64 (reference forward) for comparison.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bitnet_sdk.ternary import TernaryTensor, quantize_activations

__all__ = [
    "LayerReport",
    "QuantizationReport",
    "cosine_rows",
    "layer_report",
    "relative_error",
    "ternary_output",
]


_CHUNK = 1 << 16  # elements per chunk of the float64 error sums (512 KiB each)


def relative_error(w: np.ndarray, w_hat: np.ndarray | TernaryTensor) -> float:
    """``‖W − Ŵ‖_F / ‖W‖_F``, summed in float64 over row chunks (so no float64 copy of the
    whole matrix); ``w_hat`` may be a :class:`TernaryTensor` (never dequantized whole).
    0 when both are zero, inf when only ``W`` is."""
    w = np.asarray(w)
    w2 = w.reshape(len(w), -1) if w.ndim else w.reshape(1, 1)
    rows, cols = w2.shape
    step = max(1, _CHUNK // max(cols, 1))
    err = ref = 0.0
    for r in range(0, rows, step):
        a = w2[r : r + step].astype(np.float64)
        if isinstance(w_hat, TernaryTensor):
            b = w_hat.q[r : r + step, :cols].astype(np.float64) * w_hat.scale[r : r + step, None].astype(np.float64)
        else:
            b = np.asarray(w_hat).reshape(rows, cols)[r : r + step].astype(np.float64)
        d = (a - b).ravel()
        a = a.ravel()
        # einsum, not BLAS: on a loaded machine a threaded ddot of a small chunk costs ~20 ms
        err += float(np.einsum("i,i->", d, d))
        ref += float(np.einsum("i,i->", a, a))
    if ref == 0.0:
        return 0.0 if err == 0.0 else float("inf")
    return float(np.sqrt(err / ref))


def ternary_output(t: TernaryTensor, x: np.ndarray) -> np.ndarray:
    """``ternary_linear(t, x)`` computed with a float32 BLAS product: the int8 × ternary sums
    are integers below 2**24, so float32 holds them exactly and the result is identical."""
    xq, a = quantize_activations(x)
    # ``W @ xᵀ`` rather than ``x @ Wᵀ``: with few rows of x, OpenBLAS splits this orientation
    # across threads far better (5-10x faster on a busy machine)
    acc = (t.q.astype(np.float32) @ xq.astype(np.float32).T).T
    return (acc * t.scale[None, :]) / a[:, None]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two ``[n, k]`` arrays (1 for two zero rows)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(both_zero, 1.0, dot / np.maximum(na * nb, 1e-300))
    return cos


@dataclass
class LayerReport:
    """Accuracy of one quantized weight matrix."""

    name: str
    shape: list[int]
    source_type: str
    output_type: str
    relative_error: float
    output_cosine: float | None = None  # mean over calibration rows
    output_cosine_min: float | None = None
    lossless: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_report(
    name: str, w: np.ndarray, stored: TernaryTensor, calib: np.ndarray | None, *,
    source_type: str, output_type: str, lossless: bool = False,
) -> LayerReport:
    """Measure one layer: ``w`` float ``[rows, cols]``, ``stored`` what the file holds
    (columns beyond ``w``'s are padding and ignored), ``calib`` inputs ``[n, cols]`` or None."""
    cols = w.shape[1]
    t = stored if stored.shape[1] == cols else TernaryTensor(np.ascontiguousarray(stored.q[:, :cols]), stored.scale)
    rep = LayerReport(name, list(w.shape), source_type, output_type, relative_error(w, t), lossless=lossless)
    if calib is not None and len(calib):
        x = np.asarray(calib, dtype=np.float32)
        ref = (np.asarray(w, dtype=np.float32) @ x.T).T  # float32 BLAS (see ternary_output)
        cos = cosine_rows(ternary_output(t, x), ref)
        rep.output_cosine, rep.output_cosine_min = float(cos.mean()), float(cos.min())
    return rep


@dataclass
class QuantizationReport:
    """The outcome of :func:`bitnet_sdk.quantization.pipeline.quantize`.

    Sizes are bytes: ``original_bytes`` of the source files, ``quantized_bytes`` of the output
    file (``quantized_weight_bytes``: its tensor data); ``compression_ratio = original /
    quantized``; ``memory_reduction = 1 − quantized / original`` (the fraction saved).
    ``bits_per_weight`` averages tensor data over every parameter written, high-precision
    tensors included. ``seconds`` is the wall time, ``stages`` its split.
    """

    source: str
    output: str
    source_kind: str
    model_kind: str  # "llm" | "dense"
    qtype: str
    format: str
    arch: str
    original_bytes: int = 0
    quantized_bytes: int = 0
    quantized_weight_bytes: int = 0  # tensor data only (no header or vocabulary)
    parameters: int = 0
    tensors_quantized: int = 0
    tensors_kept: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    layers: list[LayerReport] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    agreement: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def compression_ratio(self) -> float:
        return self.original_bytes / self.quantized_bytes if self.quantized_bytes else 0.0

    @property
    def memory_reduction(self) -> float:
        return 1.0 - self.quantized_bytes / self.original_bytes if self.original_bytes else 0.0

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.quantized_weight_bytes / self.parameters if self.parameters else 0.0

    def summary(self) -> dict[str, Any]:
        """Aggregates over layers: mean/max relative error, mean/min output cosine."""
        errs = [lr.relative_error for lr in self.layers]
        cos = [lr.output_cosine for lr in self.layers if lr.output_cosine is not None]
        mins = [lr.output_cosine_min for lr in self.layers if lr.output_cosine_min is not None]
        return {
            "mean_relative_error": float(np.mean(errs)) if errs else None,
            "max_relative_error": float(np.max(errs)) if errs else None,
            "mean_output_cosine": float(np.mean(cos)) if cos else None,
            "min_output_cosine": float(np.min(mins)) if mins else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``bitnet quantize --json`` prints and jobs store)."""
        d = asdict(self)
        d["layers"] = [lr.to_dict() for lr in self.layers]
        d.update(
            compression_ratio=self.compression_ratio,
            memory_reduction=self.memory_reduction,
            bits_per_weight=self.bits_per_weight,
            summary=self.summary(),
        )
        return d
