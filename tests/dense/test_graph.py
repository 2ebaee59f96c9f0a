"""The dense graph importer and executor against ONNX's own reference evaluator, op by op."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from bitnet_sdk.dense.graph import Graph, Node, run
from bitnet_sdk.quantization.errors import UnsupportedOpsError
from bitnet_sdk.quantization.sources.onnx import OnnxSource

RNG = np.random.default_rng(0)


def _model(path: Path, nodes: list, inputs: dict[str, list], outputs: list[str], inits: dict[str, np.ndarray], opset: int = 20) -> Path:
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, str(path))
    return path


def _float_linear(src: OnnxSource):
    def linear(node: Node, x: np.ndarray) -> np.ndarray:
        lin = node.linear
        y = x @ src.tensors[lin.weight].T
        return y + src.tensors[lin.bias] if lin.bias else y
    return linear


def _check(path: Path, feeds: dict[str, np.ndarray], rtol: float = 1e-5) -> OnnxSource:
    src = OnnxSource(path)
    constants = {v: src.tensors[t] for v, t in src.graph.constants.items()}
    ours, _ = run(src.graph, feeds, _float_linear(src), constants)
    names = [v.name for v in src.graph.outputs]
    theirs = ReferenceEvaluator(src.model).run(names, feeds)
    for name, expected in zip(names, theirs, strict=True):
        assert ours[name].shape == expected.shape
        np.testing.assert_allclose(ours[name], expected, rtol=rtol, atol=1e-6)
    return src


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Identity"])
def test_elementwise(tmp_path: Path, op: str) -> None:
    path = _model(tmp_path / "m.onnx", [helper.make_node(op, ["x"], ["y"], name="n")], {"x": [3, 4]}, ["y"], {})
    _check(path, {"x": 3 * _x(3, 4)})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(tmp_path: Path, approximate: str) -> None:
    node = helper.make_node("Gelu", ["x"], ["y"], name="g", approximate=approximate)
    path = _model(tmp_path / "m.onnx", [node], {"x": [5, 7]}, ["y"], {})
    _check(path, {"x": 3 * _x(5, 7)}, rtol=1e-5)


@pytest.mark.parametrize(("opset", "axis"), [(13, -1), (13, 1), (11, 2)])
def test_softmax(tmp_path: Path, opset: int, axis: int) -> None:
    node = helper.make_node("Softmax", ["x"], ["y"], name="s", axis=axis)
    path = _model(tmp_path / "m.onnx", [node], {"x": [2, 3, 4]}, ["y"], {}, opset=opset)
    _check(path, {"x": _x(2, 3, 4)})


def test_softmax_before_opset_13_flattens_at_axis(tmp_path: Path) -> None:
    """Opsets 1-12 coerce the input to 2-D at ``axis`` (onnx.reference implements only the
    opset-13 rule, so the spec is computed here)."""
    node = helper.make_node("Softmax", ["x"], ["y"], name="s", axis=1)
    src = OnnxSource(_model(tmp_path / "m.onnx", [node], {"x": [2, 3, 4]}, ["y"], {}, opset=11))
    x = _x(2, 3, 4)
    ours, _ = run(src.graph, {"x": x}, _float_linear(src), {})
    flat = x.reshape(2, 12).astype(np.float64)
    e = np.exp(flat - flat.max(axis=1, keepdims=True))
    np.testing.assert_allclose(ours["y"], (e / e.sum(axis=1, keepdims=True)).reshape(2, 3, 4), rtol=1e-6)


@pytest.mark.parametrize("axis", [1, 2, 0])
def test_flatten(tmp_path: Path, axis: int) -> None:
    path = _model(tmp_path / "m.onnx", [helper.make_node("Flatten", ["x"], ["y"], name="f", axis=axis)], {"x": [2, 3, 4]}, ["y"], {})
    _check(path, {"x": _x(2, 3, 4)})


def test_reshape_with_copy_and_inferred_dims_from_a_constant_node(tmp_path: Path) -> None:
    shape = numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape_value")
    nodes = [
        helper.make_node("Constant", [], ["shape"], name="c", value=shape),
        helper.make_node("Reshape", ["x", "shape"], ["y"], name="r"),
    ]
    _check(_model(tmp_path / "m.onnx", nodes, {"x": [2, 3, 4]}, ["y"], {}), {"x": _x(2, 3, 4)})


def test_gemm_attributes_fold_into_the_linear_layer(tmp_path: Path) -> None:
    inits = {"B": _x(6, 4), "C": _x(4)}  # transB=0: B is [in, out]
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="gemm", alpha=0.5, beta=2.0)
    src = _check(_model(tmp_path / "m.onnx", [node], {"x": [3, 6]}, ["y"], inits), {"x": _x(3, 6)})
    (lin_node,) = src.graph.linears
    assert (lin_node.linear.in_features, lin_node.linear.out_features) == (6, 4)
    np.testing.assert_allclose(src.tensors[lin_node.linear.weight], 0.5 * inits["B"].T)
    np.testing.assert_allclose(src.tensors[lin_node.linear.bias], 2.0 * inits["C"])


def test_gemm_with_a_matrix_bias_keeps_an_add(tmp_path: Path) -> None:
    inits = {"B": _x(4, 6), "C": _x(3, 4)}
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="gemm", transB=1)
    src = _check(_model(tmp_path / "m.onnx", [node], {"x": [3, 6]}, ["y"], inits), {"x": _x(3, 6)})
    assert [n.op for n in src.graph.nodes] == ["Linear", "Add"]


def test_matmul_add_and_dynamic_matmul(tmp_path: Path) -> None:
    inits = {"W": _x(5, 3), "b": _x(3)}
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["h2"], name="add"),
        helper.make_node("MatMul", ["h2", "z"], ["y"], name="dyn"),
    ]
    src = _check(_model(tmp_path / "m.onnx", nodes, {"x": [2, 5], "z": [3, 2]}, ["y"], inits), {"x": _x(2, 5), "z": _x(3, 2)})
    assert [n.op for n in src.graph.nodes] == ["Linear", "Add", "MatMul"]
    assert list(src.graph.constants) == ["b"]


def test_every_unsupported_operator_is_named(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Exp", ["a"], ["b"], name="exp_1"),
        helper.make_node("Gemm", ["b", "B"], ["c"], name="gemm_t", transA=1),
        helper.make_node("LayerNormalization", ["c", "s"], ["y"], name="ln"),
    ]
    path = _model(tmp_path / "m.onnx", nodes, {"x": [4, 4]}, ["y"], {"B": _x(4, 4), "s": _x(4)})
    with pytest.raises(UnsupportedOpsError) as exc:
        OnnxSource(path)
    assert exc.value.nodes == [("Exp", "exp_1"), ("Gemm(transA=1)", "gemm_t"), ("LayerNormalization", "ln")]
    assert "Exp (node 'exp_1')" in str(exc.value) and "supported: Add, Constant" in str(exc.value)


def test_graph_json_round_trip(tmp_path: Path) -> None:
    inits = {"W": _x(5, 3), "b": _x(3)}
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc"), helper.make_node("Softmax", ["h"], ["y"], name="sm")]
    src = OnnxSource(_model(tmp_path / "m.onnx", nodes, {"x": ["N", 5]}, ["y"], inits))
    again = Graph.from_json(src.graph.to_json())
    assert again == src.graph
    assert again.inputs[0].shape == (None, 5)
    with pytest.raises(ValueError, match=r"unknown operators \['Conv'\]"):
        Graph.from_json(src.graph.to_json().replace('"Softmax"', '"Conv"'))
    with pytest.raises(ValueError, match=r"version"):
        Graph.from_json('{"version": 99}')
