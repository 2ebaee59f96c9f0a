"""``validate`` dispatches ternary dense models (imported from ONNX) to their own rules."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitnet_sdk.loading import validate
from bitnet_sdk.quantization import quantize


def _mlp(path) -> None:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [w1, w2],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_dense_model_validates_and_its_truncation_is_reported(tmp_path):
    src, dst = tmp_path / "mlp.onnx", tmp_path / "mlp.gguf"
    _mlp(src)
    quantize(src, dst, "tq2_0")
    report = validate(dst)
    assert report.ok, report.to_dict()
    assert report.arch == "bitnet-dense"
    data = dst.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 100])
    cut = validate(tmp_path / "cut.gguf")
    assert not cut.ok
    assert all(p.code != "unknown_architecture" for p in cut.problems), cut.to_dict()
