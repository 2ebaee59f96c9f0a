"""The dense model graph: a feed-forward network as a list of nodes, and its executor.

Nodes keep ONNX's operator names and semantics, with one addition: ``Linear`` is a matrix product
with a stored weight (``x · Wᵀ * alpha + bias``), which is what ``MatMul``/``Gemm`` with a constant
weight become on import, and what runs ternary. Values are named as in the ONNX graph. The graph
serialises to JSON (stored in the GGUF file's metadata) and runs with a caller-supplied ``linear``
function, so the same code executes the ternary model (backend matmul) and the float reference
(``x @ W.T``), and per-layer outputs of the two can be compared.

Operators (ONNX semantics): ``Linear``, ``MatMul`` (float, both operands given), ``Add``,
``Relu``, ``Gelu`` (``approximate`` = ``none`` | ``tanh``), ``Sigmoid``, ``Tanh``, ``Softmax``
(``axis``; opsets before 13 flatten to 2-D at ``axis`` first), ``Flatten`` (``axis``),
``Reshape`` (target shape stored as an attribute; ``0`` copies a dimension unless ``allowzero``,
``-1`` is inferred), ``Identity``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["GRAPH_VERSION", "OPS", "Graph", "Linear", "Node", "ValueInfo", "run"]

GRAPH_VERSION = 1
#: Operators the executor implements.
OPS = ("Linear", "MatMul", "Add", "Relu", "Gelu", "Sigmoid", "Tanh", "Softmax", "Flatten", "Reshape", "Identity")


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output: name and shape (ints; ``None`` for a free dimension such as
    the batch)."""

    name: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class Linear:
    """A stored weight: ``out_features x in_features`` (stored padded to ``padded_in`` columns),
    an optional bias vector, under GGUF tensor names."""

    weight: str
    in_features: int
    out_features: int
    padded_in: int
    bias: str | None = None
    source: str = ""  # the ONNX initializer the weight came from


@dataclass(frozen=True)
class Node:
    """One operator: ``inputs`` and ``outputs`` are value names; ``attrs`` JSON-able."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    linear: Linear | None = None


@dataclass(frozen=True)
class Graph:
    """Inputs, outputs, nodes in execution order and the float constants they read
    (value name → GGUF tensor name)."""

    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]
    nodes: tuple[Node, ...]
    constants: dict[str, str] = field(default_factory=dict)

    @property
    def linears(self) -> list[Node]:
        return [n for n in self.nodes if n.linear is not None]

    def to_json(self) -> str:
        return json.dumps({"version": GRAPH_VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Graph:
        """Parse :meth:`to_json` output; ``ValueError`` for anything malformed."""
        try:
            d = json.loads(text)
            if d.get("version") != GRAPH_VERSION:
                raise ValueError(f"graph version {d.get('version')!r} is not {GRAPH_VERSION}")
            nodes = tuple(
                Node(n["op"], n["name"], tuple(n["inputs"]), tuple(n["outputs"]), dict(n["attrs"]),
                     Linear(**n["linear"]) if n.get("linear") else None)
                for n in d["nodes"]
            )
            vi = lambda items: tuple(ValueInfo(v["name"], tuple(v["shape"])) for v in items)  # noqa: E731
            graph = cls(vi(d["inputs"]), vi(d["outputs"]), nodes, dict(d["constants"]))
        except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise ValueError(f"malformed dense graph: {exc}") from exc
        bad = sorted({n.op for n in graph.nodes} - set(OPS))
        if bad:
            raise ValueError(f"dense graph uses unknown operators {bad}")
        return graph


#: ``linear(node, x2d)``: ``x [n, in_features]`` → ``[n, out_features]`` float32, bias included.
LinearFn = Callable[[Node, np.ndarray], np.ndarray]


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float64 (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7; numpy has no erf)."""
    x = np.asarray(x, dtype=np.float64)
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    x64 = np.asarray(x, dtype=np.float64)
    if approximate == "tanh":
        y = 0.5 * x64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64**3)))
    else:
        y = 0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)))
    return y.astype(np.float32)


def _softmax(x: np.ndarray, axis: int, legacy: bool) -> np.ndarray:
    if legacy:  # opset < 13: coerce to 2-D at axis, softmax over the trailing block
        axis = axis % max(x.ndim, 1)
        flat = x.reshape(math.prod(x.shape[:axis]), -1)
        return _softmax(flat, -1, False).reshape(x.shape)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(np.float32)


def _reshape(x: np.ndarray, shape: list[int], allowzero: bool) -> np.ndarray:
    target = [x.shape[i] if (d == 0 and not allowzero and i < x.ndim) else d for i, d in enumerate(shape)]
    return x.reshape(target)


def _apply_linear(node: Node, x: np.ndarray, linear: LinearFn) -> np.ndarray:
    lin = node.linear
    assert lin is not None
    if x.shape[-1] != lin.in_features:
        raise ValueError(f"{node.name}: input has {x.shape[-1]} features, the layer expects {lin.in_features}")
    lead = x.shape[:-1]
    y = linear(node, np.ascontiguousarray(x, dtype=np.float32).reshape(-1, lin.in_features))
    return y.reshape(*lead, lin.out_features)


def _eval(node: Node, args: list[np.ndarray], linear: LinearFn) -> np.ndarray:
    op, a = node.op, node.attrs
    if op == "Linear":
        return _apply_linear(node, args[0], linear)
    if op == "MatMul":
        return np.matmul(args[0], args[1]).astype(np.float32)
    if op == "Add":
        return (args[0] + args[1]).astype(np.float32)
    if op == "Relu":
        return np.maximum(args[0], np.float32(0))
    if op == "Gelu":
        return _gelu(args[0], a.get("approximate", "none"))
    if op == "Sigmoid":
        return (1.0 / (1.0 + np.exp(-args[0].astype(np.float64)))).astype(np.float32)
    if op == "Tanh":
        return np.tanh(args[0])
    if op == "Softmax":
        return _softmax(args[0], int(a.get("axis", -1)), bool(a.get("legacy", False)))
    if op == "Flatten":
        axis = int(a.get("axis", 1)) % (args[0].ndim + 1) if args[0].ndim else 0
        return args[0].reshape(math.prod(args[0].shape[:axis]), -1)
    if op == "Reshape":
        return _reshape(args[0], list(a["shape"]), bool(a.get("allowzero", 0)))
    if op == "Identity":
        return args[0]
    raise ValueError(f"unknown operator {op}")


def run(
    graph: Graph,
    feeds: Mapping[str, np.ndarray],
    linear: LinearFn,
    constants: Mapping[str, np.ndarray],
    *,
    capture: Collection[str] = (),
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run the graph: returns ``(outputs by name, captured intermediate values by name)``.

    ``feeds`` holds every graph input (float32); ``constants`` the float constants by value
    name. ``capture`` names intermediate values to return as well (per-layer comparisons).
    """
    values: dict[str, np.ndarray] = dict(constants)
    for vi in graph.inputs:
        if vi.name not in feeds:
            raise ValueError(f"missing input {vi.name!r}")
        values[vi.name] = np.asarray(feeds[vi.name], dtype=np.float32)
    for node in graph.nodes:
        try:
            args = [values[name] for name in node.inputs]
        except KeyError as exc:
            raise ValueError(f"{node.name}: value {exc.args[0]!r} is not defined") from None
        values[node.outputs[0]] = _eval(node, args, linear)
    outputs = {vi.name: values[vi.name] for vi in graph.outputs}
    return outputs, {name: values[name] for name in capture if name in values}
