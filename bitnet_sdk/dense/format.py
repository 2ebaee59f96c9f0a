"""How a ternary dense model is stored: a GGUF file with its own architecture name.

* ``general.architecture = "bitnet-dense"`` (so llama.cpp and the LLM loader never mistake it for
  a language model), ``general.name``, ``general.file_type``;
* ``bitnet-dense.graph``: the :class:`~bitnet_sdk.dense.graph.Graph` as JSON (nodes, inputs,
  outputs, and which tensor each weight, bias and constant lives in);
* tensors ``dense.<i>.weight`` (TQ2_0/TQ1_0/I2_S, or a float type for layers kept in high
  precision; columns zero-padded to the format's block size, ``padded_in``), ``dense.<i>.bias``
  (F32) and ``const.<j>`` (F32 operands of ``Add``/``MatMul``).

:func:`dense_problems` re-validates a file (container, layout, graph, every tensor's presence,
shape, type and data), as ``bitnet_sdk.model.validate`` does for language models.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType

from bitnet_sdk.dense.graph import Graph
from bitnet_sdk.formats.constants import ARCH_BITNET_DENSE
from bitnet_sdk.model.gguf_file import (
    TERNARY_TYPES,
    GGUFFormatError,
    ModelFile,
    NotTernaryError,
    Problem,
    layout_problems,
    read_model,
)

__all__ = ["ARCH", "GRAPH_KEY", "dense_problems", "read_graph"]

ARCH = ARCH_BITNET_DENSE
GRAPH_KEY = f"{ARCH}.graph"
_FLOAT_TYPES = frozenset(int(t) for t in (
    GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16, GGMLQuantizationType.Q8_0,
))
_F32 = int(GGMLQuantizationType.F32)


def read_graph(mf: ModelFile) -> Graph:
    """The graph stored in an opened dense GGUF file (``ValueError`` if absent or malformed)."""
    if mf.arch != ARCH:
        raise ValueError(f"{mf.path.name}: architecture {mf.arch!r} is not {ARCH!r}")
    text = mf.metadata.get(GRAPH_KEY)
    if not isinstance(text, str):
        raise ValueError(f"{mf.path.name}: {GRAPH_KEY} is missing")
    return Graph.from_json(text)


def _expected(graph: Graph) -> dict[str, tuple[tuple[int, ...], frozenset[int]]]:
    """GGUF tensor name → (shape, allowed types)."""
    out: dict[str, tuple[tuple[int, ...], frozenset[int]]] = {}
    for node in graph.linears:
        lin = node.linear
        assert lin is not None
        out[lin.weight] = ((lin.out_features, lin.padded_in), TERNARY_TYPES | _FLOAT_TYPES)
        if lin.bias:
            out[lin.bias] = ((lin.out_features,), frozenset({_F32}))
    for tensor in graph.constants.values():
        out[tensor] = ((), frozenset({_F32}))  # any shape
    return out


def _tensor_problems(mf: ModelFile, graph: Graph, check_data: bool) -> Iterator[Problem]:
    expected = _expected(graph)
    for name, (shape, types) in expected.items():
        info = mf.tensors.get(name)
        if info is None:
            yield Problem("missing_tensor", f"required tensor {name} is missing", name)
            continue
        if shape and info.shape != shape:
            yield Problem("tensor_shape", f"shape {list(info.shape)}, expected {list(shape)}", name)
            continue
        if info.ggml_type not in types:
            yield Problem("tensor_type", f"type {info.type_name} is not usable here", name)
            continue
        if check_data and info.n_bytes is not None:
            try:
                value = mf.tensor(name, cache=False)
                if isinstance(value, np.ndarray) and not np.all(np.isfinite(value)):
                    yield Problem("non_finite", "holds NaN or infinite values", name)
            except NotTernaryError as exc:
                yield Problem("not_ternary", str(exc).removeprefix(f"{name}: "), name)
            except (GGUFFormatError, ValueError) as exc:
                yield Problem("tensor_type", f"cannot decode {info.type_name} data: {exc}", name)
    scales = {n.linear.weight.removesuffix(".weight") + ".scale" for n in graph.linears if n.linear}
    for name, info in mf.tensors.items():
        if name in scales:  # llama.cpp-style one-element scale of a ternary weight
            if info.n_elements != 1 or info.ggml_type != _F32:
                yield Problem("tensor_shape", "a weight scale must be one F32 value", name)
        elif name not in expected:
            yield Problem("unexpected_tensor", f"tensor {name} is not used by the graph", name)


def dense_problems(path: str | os.PathLike[str], *, check_data: bool = True) -> list[Problem]:
    """Everything wrong with a dense model file (empty when it loads and runs)."""
    try:
        mf = read_model(path, strict=False)
    except FileNotFoundError:
        return [Problem("file_missing", f"no such file: {path}")]
    except GGUFFormatError as exc:
        return [Problem(exc.code, str(exc), exc.tensor)]
    problems = layout_problems(mf)
    try:
        graph = read_graph(mf)
    except ValueError as exc:
        return [*problems, Problem("bad_graph", str(exc))]
    bad_layout = {p.tensor for p in problems if p.tensor}
    problems += [p for p in _tensor_problems(mf, graph, check_data) if p.tensor not in bad_layout]
    return problems


def graph_summary(graph: Graph) -> dict[str, Any]:
    """Counts for reports: linear layers, nodes, inputs and outputs."""
    return {
        "nodes": len(graph.nodes),
        "linear_layers": len(graph.linears),
        "inputs": [{"name": v.name, "shape": list(v.shape)} for v in graph.inputs],
        "outputs": [{"name": v.name, "shape": list(v.shape)} for v in graph.outputs],
    }
