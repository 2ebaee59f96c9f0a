"""ONNX feed-forward networks → the dense graph and its float weights.

Read with the ``onnx`` package (``onnx.load`` and ``onnx.numpy_helper``). Supported operators:
``MatMul``, ``Gemm``, ``Add``, ``Relu``, ``Gelu``, ``Sigmoid``, ``Tanh``, ``Softmax``,
``Flatten``, ``Reshape``, plus ``Constant`` and ``Identity`` (folded). A ``MatMul`` or ``Gemm``
whose right operand is a constant 2-D matrix becomes a ``Linear`` layer holding
``W = Bᵀ`` (``[out, in]``; ``Gemm``'s ``alpha`` folded into ``W``, ``beta * C`` into the bias):
those are the matrices that go ternary. Everything else runs as in ONNX. Every unsupported
operator (or unsupported use of one, such as ``Gemm`` with ``transA``) is reported at once with
its node name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from bitnet_sdk.dense.graph import Graph, Linear, Node, ValueInfo
from bitnet_sdk.quantization.errors import UnsupportedOpsError, UnsupportedSourceError

__all__ = ["SUPPORTED_ONNX_OPS", "OnnxSource"]

SUPPORTED_ONNX_OPS = (
    "MatMul", "Gemm", "Add", "Relu", "Gelu", "Sigmoid", "Tanh", "Softmax", "Flatten", "Reshape",
    "Constant", "Identity",
)
_DOMAINS = ("", "ai.onnx")
_SIMPLE = ("Relu", "Sigmoid", "Tanh", "Identity")


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        out[a.name] = value.decode("utf-8") if isinstance(value, bytes) else value
    return out


def _value_info(vi: onnx.ValueInfoProto) -> ValueInfo:
    dims = vi.type.tensor_type.shape.dim
    return ValueInfo(vi.name, tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in dims))


@dataclass
class _Builder:
    consts: dict[str, np.ndarray]
    opset: int
    nodes: list[Node] = field(default_factory=list)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # GGUF name -> float32
    constants: dict[str, str] = field(default_factory=dict)  # value name -> GGUF name
    bad: list[tuple[str, str]] = field(default_factory=list)

    def const_ref(self, value: str) -> None:
        if value in self.consts and value not in self.constants:
            name = f"const.{len(self.constants)}"
            self.constants[value] = name
            self.tensors[name] = np.asarray(self.consts[value], dtype=np.float32)

    def linear(self, node: onnx.NodeProto, x: str, w: np.ndarray, bias: np.ndarray | None, source: str) -> None:
        i = sum(1 for n in self.nodes if n.linear is not None)
        wname, bname = f"dense.{i}.weight", f"dense.{i}.bias" if bias is not None else None
        self.tensors[wname] = np.ascontiguousarray(w, dtype=np.float32)
        if bias is not None and bname:
            self.tensors[bname] = np.ascontiguousarray(bias, dtype=np.float32)
        lin = Linear(wname, int(w.shape[1]), int(w.shape[0]), int(w.shape[1]), bname, source)
        self.nodes.append(Node("Linear", node.name, (x,), (node.output[0],), {}, lin))

    def add(self, op: str, node: onnx.NodeProto, inputs: list[str], attrs: dict[str, Any] | None = None) -> None:
        for value in inputs:
            self.const_ref(value)
        self.nodes.append(Node(op, node.name, tuple(inputs), (node.output[0],), attrs or {}))


def _matmul(b: _Builder, node: onnx.NodeProto) -> None:
    x, y = node.input[0], node.input[1]
    w = b.consts.get(y)
    if w is not None and w.ndim == 2 and x not in b.consts:
        b.linear(node, x, w.T, None, y)
    else:
        b.add("MatMul", node, [x, y])


def _gemm(b: _Builder, node: onnx.NodeProto, attrs: dict[str, Any]) -> None:
    if attrs.get("transA", 0):
        b.bad.append(("Gemm(transA=1)", node.name))
        return
    a_in, b_in = node.input[0], node.input[1]
    c_in = node.input[2] if len(node.input) > 2 and node.input[2] else None
    mat = b.consts.get(b_in)
    if mat is None or mat.ndim != 2:
        b.bad.append(("Gemm(non-constant B)", node.name))
        return
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    w = (mat if attrs.get("transB", 0) else mat.T) * np.float32(alpha)
    bias = None
    if c_in is not None and c_in in b.consts:
        c = np.asarray(b.consts[c_in], dtype=np.float32) * np.float32(beta)
        if c.size in (1, w.shape[0]):
            bias, c_in = np.broadcast_to(c.reshape(-1), (w.shape[0],)).copy(), None
    if c_in is None:
        b.linear(node, a_in, w, bias, b_in)
        return
    if beta != 1.0:
        b.bad.append(("Gemm(beta with a non-vector C)", node.name))
        return
    tmp = f"{node.output[0]}::gemm"
    b.linear(onnx.helper.make_node("Gemm", [a_in], [tmp], name=node.name), a_in, w, None, b_in)
    b.add("Add", node, [tmp, c_in])


def _convert(b: _Builder, node: onnx.NodeProto) -> None:
    op, attrs = node.op_type, _attrs(node)
    if op == "MatMul":
        _matmul(b, node)
    elif op == "Gemm":
        _gemm(b, node, attrs)
    elif op == "Add":
        b.add("Add", node, list(node.input))
    elif op in _SIMPLE:
        b.add(op, node, [node.input[0]])
    elif op == "Gelu":
        b.add("Gelu", node, [node.input[0]], {"approximate": attrs.get("approximate", "none")})
    elif op == "Softmax":
        legacy = b.opset < 13
        b.add("Softmax", node, [node.input[0]], {"axis": int(attrs.get("axis", 1 if legacy else -1)), "legacy": legacy})
    elif op == "Flatten":
        b.add("Flatten", node, [node.input[0]], {"axis": int(attrs.get("axis", 1))})
    elif op == "Reshape":
        shape = b.consts.get(node.input[1])
        if shape is None:
            b.bad.append(("Reshape(non-constant shape)", node.name))
            return
        attrs_out = {"shape": [int(d) for d in np.asarray(shape).reshape(-1)], "allowzero": int(attrs.get("allowzero", 0))}
        b.add("Reshape", node, [node.input[0]], attrs_out)


class OnnxSource:
    """An ONNX model read into a dense :class:`Graph` plus float32 tensors by GGUF name."""

    kind = "onnx"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.model = onnx.load(str(self.path))
        except Exception as exc:  # protobuf errors have no common base worth naming
            raise UnsupportedSourceError(f"{self.path}: not a readable ONNX model ({exc})") from exc
        g = self.model.graph
        opset = next((o.version for o in self.model.opset_import if o.domain in _DOMAINS), 0)
        consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        b = _Builder(consts, opset)
        for node in g.node:
            if node.domain not in _DOMAINS or node.op_type not in SUPPORTED_ONNX_OPS:
                b.bad.append((node.op_type if node.domain in _DOMAINS else f"{node.domain}.{node.op_type}", node.name))
            elif node.op_type == "Constant":
                attrs = _attrs(node)
                if "value" not in attrs:
                    b.bad.append(("Constant(non-tensor value)", node.name))
                else:
                    consts[node.output[0]] = numpy_helper.to_array(attrs["value"])
            else:
                _convert(b, node)
        if b.bad:
            raise UnsupportedOpsError(b.bad, SUPPORTED_ONNX_OPS)
        inputs = tuple(_value_info(vi) for vi in g.input if vi.name not in consts)
        outputs = tuple(_value_info(vi) for vi in g.output)
        self.graph = Graph(inputs, outputs, tuple(b.nodes), dict(b.constants))
        self.tensors = b.tensors
        self.name = g.name or self.path.stem
        data_files = {self.path} | {self.path.parent / e.value for t in g.initializer for e in t.external_data if e.key == "location"}
        self.original_bytes = sum(p.stat().st_size for p in data_files if p.is_file())

    def close(self) -> None:
        self.tensors.clear()
