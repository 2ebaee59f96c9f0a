"""``load(path).predict(inputs)``: run a ternary dense model (converted from ONNX).

Ternary weights are handed to the backend's ``prepare_weights`` once at load and multiplied with
``Backend.matmul`` (per-token int8 activations, as every BitNet layer); layers kept in high
precision, biases and element-wise operators run in numpy float32. Inputs narrower than a stored
(zero-padded) weight are padded with zeros, which changes neither the int8 activation scale nor
the product.

:meth:`DenseModel.predict` returns a :class:`Prediction`: every graph output by name, and for
classifiers — graphs whose output comes from ``Softmax`` — the probabilities and the arg-max
class of each sample.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bitnet_sdk.backends import get as get_backend
from bitnet_sdk.backends.base import Backend
from bitnet_sdk.dense.format import read_graph
from bitnet_sdk.dense.graph import Graph, Node, run
from bitnet_sdk.model.gguf_file import ModelFile, read_model
from bitnet_sdk.ternary import TernaryTensor

__all__ = ["DenseModel", "Prediction", "load"]


@dataclass(frozen=True)
class Prediction:
    """What :meth:`DenseModel.predict` returns.

    ``outputs`` maps each graph output name to its float32 array; ``probabilities`` is the
    Softmax output of a classifier (else None) and ``labels`` its arg-max along the last axis.
    """

    outputs: dict[str, np.ndarray]
    probabilities: np.ndarray | None = None
    labels: np.ndarray | None = None

    @property
    def output(self) -> np.ndarray:
        """The first (usually only) output."""
        return next(iter(self.outputs.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "outputs": {k: v.tolist() for k, v in self.outputs.items()},
            "probabilities": None if self.probabilities is None else self.probabilities.tolist(),
            "labels": None if self.labels is None else self.labels.tolist(),
        }


class DenseModel:
    """A loaded ternary dense model. ``graph``, ``backend``, ``metadata``, ``path``."""

    def __init__(self, mf: ModelFile, graph: Graph, backend: Backend) -> None:
        self.graph = graph
        self.backend = backend
        self.metadata = dict(mf.metadata)
        self.path = str(mf.path)
        self._file = mf  # float tensors may be views of its memory map
        self._weights: dict[str, Any] = {}
        self._ternary: set[str] = set()
        for node in graph.linears:
            lin = node.linear
            assert lin is not None
            w = mf.tensor(lin.weight, cache=False)
            if isinstance(w, TernaryTensor):
                self._weights[lin.weight] = backend.prepare_weights(w)
                self._ternary.add(lin.weight)
            else:
                self._weights[lin.weight] = np.asarray(w, dtype=np.float32)[:, : lin.in_features]
            if lin.bias:
                self._weights[lin.bias] = np.asarray(mf.tensor(lin.bias), dtype=np.float32)
        self._constants = {v: np.asarray(mf.tensor(t), dtype=np.float32) for v, t in graph.constants.items()}
        producers = {n.outputs[0]: n for n in graph.nodes}
        self._softmax_outputs = [
            vi.name for vi in graph.outputs if vi.name in producers and producers[vi.name].op == "Softmax"
        ]

    def __repr__(self) -> str:
        return f"<DenseModel {self.path} layers={len(self.graph.linears)} backend={self.backend.name}>"

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def is_classifier(self) -> bool:
        return bool(self._softmax_outputs)

    def _linear(self, node: Node, x: np.ndarray) -> np.ndarray:
        lin = node.linear
        assert lin is not None
        w = self._weights[lin.weight]
        if lin.weight in self._ternary:
            if lin.padded_in != lin.in_features:
                padded = np.zeros((x.shape[0], lin.padded_in), dtype=np.float32)
                padded[:, : lin.in_features] = x
                x = padded
            y = self.backend.matmul(w, x)
        else:
            y = x @ w.T
        if lin.bias:
            y = y + self._weights[lin.bias]
        return np.asarray(y, dtype=np.float32)

    def _feeds(self, inputs: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            return {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()}
        if len(self.graph.inputs) != 1:
            raise ValueError(f"the model has inputs {self.input_names}; pass a mapping of name to array")
        return {self.graph.inputs[0].name: np.asarray(inputs, dtype=np.float32)}

    def run(
        self, inputs: np.ndarray | Mapping[str, Any], *, capture: Collection[str] = ()
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Outputs by name and the ``capture``d intermediate values (for layer comparisons)."""
        return run(self.graph, self._feeds(inputs), self._linear, self._constants, capture=capture)

    def predict(self, inputs: np.ndarray | Mapping[str, Any]) -> Prediction:
        """Run a batch: an array for a single-input model, else a mapping of input name to array."""
        outputs, _ = self.run(inputs)
        if not self._softmax_outputs:
            return Prediction(outputs)
        probs = outputs[self._softmax_outputs[0]]
        return Prediction(outputs, probs, np.argmax(probs, axis=-1))


def load(path: str | os.PathLike[str], backend: str | Backend = "auto") -> DenseModel:
    """Load a dense GGUF model for ``backend`` (a name, ``"auto"`` or an instance).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (``GGUFFormatError``,
    ``NotTernaryError``...) for a file that is not a valid dense model.
    """
    mf = read_model(path)
    graph = read_graph(mf)
    if isinstance(backend, str):
        backend = get_backend(backend)
    return DenseModel(mf, graph, backend)
