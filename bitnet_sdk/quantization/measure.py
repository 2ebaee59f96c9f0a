"""Model-level accuracy measurements on a freshly written (not yet published) file.

* :func:`llm_perplexity`: perplexity of the quantized model on texts, through the runtime
  (``bitnet_sdk.model.loader.load`` + ``Model.forward``), and of the *source* weights run in
  float64 with unquantized activations by the independent reference forward
  (``bitnet_sdk.model.reference``), on the same token ids.
* :func:`dense_agreement`: the original float ONNX graph, run by ``onnx.reference`` (the ONNX
  project's own numpy evaluator), against the ternary model on calibration inputs: prediction
  (arg-max) agreement, output cosine and largest difference; per-layer output cosines between the
  float graph and the ternary one; and how closely our float reading of the graph matches
  ``onnx.reference`` (a check of the importer itself).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bitnet_sdk.backends.base import Backend
from bitnet_sdk.dense.graph import Node, run
from bitnet_sdk.dense.model import DenseModel
from bitnet_sdk.quantization.report import cosine_rows
from bitnet_sdk.quantization.sources.base import LLMSource
from bitnet_sdk.ternary import TernaryTensor, dequantize

__all__ = ["dense_agreement", "llm_perplexity"]


def _nll(logits: np.ndarray, ids: np.ndarray) -> float:
    """Sum of −log p(ids[i+1] | ..i) over the sequence."""
    z = np.asarray(logits[:-1], dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(ids) - 1), ids[1:]].sum())


class _FloatSource:
    """The source model as the reference forward reads it: float projections (``q`` holds the
    float matrix, ``scale`` ones) and float tensors, by GGUF name."""

    def __init__(self, source: LLMSource) -> None:
        self.source = source
        self.projections = {t.name for t in source.tensors if t.projection}
        self.names = {t.name for t in source.tensors}

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def tensor(self, name: str, *, cache: bool = True) -> Any:
        value = self.source.read(name)
        if name in self.projections:
            w = dequantize(value) if isinstance(value, TernaryTensor) else np.asarray(value, dtype=np.float64)
            return SimpleNamespace(q=w, scale=np.ones(w.shape[0]))
        return value


def llm_perplexity(
    path: Path, source: LLMSource, texts: Sequence[str], max_tokens: int, backend: Backend
) -> dict[str, Any]:
    """Perplexities of the quantized file and the float source on ``texts`` (each cut to
    ``max_tokens`` tokens; texts of fewer than two tokens are skipped)."""
    from bitnet_sdk.model.loader import load
    from bitnet_sdk.model.reference import reference_forward

    model = load(path, backend)
    float_src = _FloatSource(source)
    n_tokens = 0
    nll_q = nll_src = 0.0
    for text in texts:
        ids = np.asarray(model.tokenize(text)[:max_tokens], dtype=np.int64)
        if len(ids) < 2:
            continue
        nll_q += _nll(model.forward(ids), ids)
        nll_src += _nll(reference_forward(float_src, model.config, ids, activations="none"), ids)
        n_tokens += len(ids) - 1
    if n_tokens == 0:
        return {"tokens": 0, "texts": len(texts), "quantized_perplexity": None, "source_perplexity": None}
    return {
        "tokens": n_tokens,
        "texts": len(texts),
        "quantized_perplexity": math.exp(nll_q / n_tokens),
        "source_perplexity": math.exp(nll_src / n_tokens),
    }


def dense_agreement(
    model: DenseModel, onnx_model: Any, float_tensors: dict[str, np.ndarray], feeds: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, tuple[float, float]]]:
    """(model-level agreement, per-layer ``(mean, min)`` output cosine by weight name)."""
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    reference = ReferenceEvaluator(onnx_model)
    names = [vi.name for vi in graph.outputs]
    ref_out = dict(zip(names, reference.run(names, feeds), strict=True))

    def float_linear(node: Node, x: np.ndarray) -> np.ndarray:
        lin = node.linear
        assert lin is not None
        y = x.astype(np.float64) @ float_tensors[lin.weight].astype(np.float64).T
        if lin.bias:
            y = y + float_tensors[lin.bias]
        return y.astype(np.float32)

    constants = {v: float_tensors[t] for v, t in graph.constants.items()}
    layer_values = [n.outputs[0] for n in graph.linears]
    float_out, float_layers = run(graph, feeds, float_linear, constants, capture=layer_values)
    q_out, q_layers = model.run(feeds, capture=layer_values)
    per_layer: dict[str, tuple[float, float]] = {}
    for node in graph.linears:
        lin, value = node.linear, node.outputs[0]
        assert lin is not None
        a = float_layers[value].reshape(-1, lin.out_features)
        b = q_layers[value].reshape(-1, lin.out_features)
        cos = cosine_rows(b, a)
        per_layer[lin.weight] = (float(cos.mean()), float(cos.min()))
    first = names[0]
    ref, got = np.asarray(ref_out[first], dtype=np.float32), q_out[first]
    agreement: dict[str, Any] = {
        "samples": int(ref.shape[0]) if ref.ndim else 1,
        "output": first,
        "output_cosine": float(cosine_rows(got.reshape(len(got), -1), ref.reshape(len(ref), -1)).mean()) if ref.ndim else None,
        "max_abs_diff": float(np.abs(got - ref).max()),
        "float_graph_max_abs_diff": float(max(np.abs(float_out[n] - np.asarray(ref_out[n])).max() for n in names)),
    }
    if ref.ndim >= 2 and ref.shape[-1] > 1:
        agreement["prediction_agreement"] = float(np.mean(np.argmax(got, -1) == np.argmax(ref, -1)))
    else:
        agreement["prediction_agreement"] = None
    return agreement, per_layer
