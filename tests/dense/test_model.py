"""ONNX networks quantized to each target, loaded with ``bitnet_sdk.load`` and run; the report's
agreement and errors are recomputed here from the ONNX file and the written tensors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import bitnet_sdk
from bitnet_sdk.dense import DenseModel, dense_problems
from bitnet_sdk.dense.format import GRAPH_KEY
from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.quantization.errors import UnsupportedSourceError
from bitnet_sdk.quantization.pipeline import quantize
from bitnet_sdk.ternary import ternary_linear
from bitnet_sdk.testing.synthetic import corrupt
from tests.quantization._support import build_onnx_mlp

QTYPES = ("tq2_0", "tq1_0", "i2_s")
BLOCK = {"tq2_0": 256, "tq1_0": 256, "i2_s": 128}


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, onnx.ModelProto]:
    path = tmp_path_factory.mktemp("onnx") / "mlp.onnx"
    return path, build_onnx_mlp(path, sizes=(20, 300, 64, 5), seed=3)


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("qtype", QTYPES)
def test_onnx_mlp_to_each_target(tmp_path: Path, mlp: tuple[Path, onnx.ModelProto], qtype: str) -> None:
    path, model = mlp
    x = np.random.default_rng(11).standard_normal((64, 20)).astype(np.float32)
    out = tmp_path / f"mlp.{qtype}.gguf"
    report = quantize(path, out, qtype, calibration=x, backend="numpy")
    assert (report.model_kind, report.arch, report.tensors_quantized, report.tensors_kept) == ("dense", "bitnet-dense", 3, 0)
    assert report.quantized_bytes == out.stat().st_size
    assert report.original_bytes == path.stat().st_size

    dense = bitnet_sdk.load(out, backend="numpy")
    assert isinstance(dense, DenseModel) and dense.is_classifier
    pred = dense.predict(x)
    # independent forward from the file's tensors: ternary layers, ReLU, softmax
    mf = read_model(out)
    inits = _inits(model)
    h = x
    for i in range(3):
        t = mf.tensor(f"dense.{i}.weight")
        assert t.shape == (inits[f"fc{i}.weight"].shape[0], -(-inits[f"fc{i}.weight"].shape[1] // BLOCK[qtype]) * BLOCK[qtype])
        padded = np.zeros((len(h), t.shape[1]), np.float32)
        padded[:, : h.shape[1]] = h
        h = ternary_linear(t, padded) + inits[f"fc{i}.bias"]
        if i < 2:
            h = np.maximum(h, 0)
    e = np.exp(h - h.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pred.probabilities, probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(pred.labels, pred.probabilities.argmax(axis=1))
    # the report's agreement against onnx's own evaluator on the same inputs
    ref = ReferenceEvaluator(model).run(None, {"input": x})[0]
    a = report.agreement
    assert a is not None and a["samples"] == 64
    assert a["prediction_agreement"] == pytest.approx(np.mean(ref.argmax(1) == pred.labels))
    assert a["max_abs_diff"] == pytest.approx(np.abs(ref - pred.probabilities).max(), rel=1e-5)
    assert a["float_graph_max_abs_diff"] < 1e-5  # our float reading of the graph is ONNX's
    for i, layer in enumerate(report.layers):
        w = inits[f"fc{i}.weight"].astype(np.float64)  # Gemm transB=1: already [out, in]
        t = mf.tensor(f"dense.{i}.weight")
        w_hat = t.q[:, : w.shape[1]] * t.scale[:, None].astype(np.float64)
        assert layer.relative_error == pytest.approx(np.linalg.norm(w - w_hat) / np.linalg.norm(w), rel=1e-9)
        assert -1.0 <= layer.output_cosine_min <= layer.output_cosine <= 1.0


def test_keeping_layers_in_float(tmp_path: Path, mlp: tuple[Path, onnx.ModelProto]) -> None:
    path, model = mlp
    report = quantize(path, tmp_path / "a.gguf", "tq2_0", keep_high_precision=["fc2.weight"], backend="numpy")
    mf = read_model(tmp_path / "a.gguf")
    assert (report.tensors_quantized, report.tensors_kept) == (2, 1)
    assert mf.tensor_info("dense.2.weight").type_name == "F32"  # dense default: f32
    np.testing.assert_array_equal(mf.tensor("dense.2.weight"), _inits(model)["fc2.weight"])
    everything = quantize(path, tmp_path / "b.gguf", "tq2_0", keep_high_precision="*", calibration=100, backend="numpy")
    assert everything.tensors_quantized == 0
    assert everything.agreement["prediction_agreement"] == 1.0
    assert everything.agreement["max_abs_diff"] < 1e-5


_ACTS = {
    "Gelu": np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))),
    "Tanh": np.tanh,
    "Sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
}


@pytest.mark.parametrize(("activation", "use_gemm", "flatten"), [("Gelu", False, True), ("Tanh", True, False), ("Sigmoid", False, False)])
def test_other_layouts_run(tmp_path: Path, activation: str, use_gemm: bool, flatten: bool) -> None:
    path = tmp_path / "m.onnx"
    model = build_onnx_mlp(path, sizes=(16, 32, 3), activation=activation, use_gemm=use_gemm, flatten=flatten, softmax=False)
    report = quantize(path, tmp_path / "m.gguf", "i2_s", calibration=32, backend="numpy")
    assert report.agreement["float_graph_max_abs_diff"] < 1e-5
    dense = bitnet_sdk.load(tmp_path / "m.gguf", backend="numpy")
    x = np.random.default_rng(1).standard_normal((5, 4, 4) if flatten else (5, 16)).astype(np.float32)
    pred = dense.predict(x)
    assert pred.probabilities is None and pred.labels is None  # no Softmax: not a classifier
    mf, inits = read_model(tmp_path / "m.gguf"), _inits(model)
    h = x.reshape(5, 16).astype(np.float64)
    for i in range(2):
        t = mf.tensor(f"dense.{i}.weight")
        padded = np.zeros((5, t.shape[1]), np.float32)
        padded[:, : h.shape[1]] = h
        h = ternary_linear(t, padded).astype(np.float64) + inits[f"fc{i}.bias"]
        if i == 0:
            h = _ACTS[activation](h)
    np.testing.assert_allclose(pred.output, h, rtol=1e-5, atol=1e-6)


def test_graph_without_weights_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph), str(tmp_path / "r.onnx"))
    with pytest.raises(UnsupportedSourceError, match=r"no MatMul/Gemm layer"):
        quantize(tmp_path / "r.onnx", tmp_path / "r.gguf")
    assert not (tmp_path / "r.gguf").exists()


def test_validation_finds_damage(tmp_path: Path, mlp: tuple[Path, onnx.ModelProto]) -> None:
    good = tmp_path / "good.gguf"
    quantize(mlp[0], good, "tq2_0", backend="numpy")
    assert dense_problems(good) == []
    truncated = corrupt(good, tmp_path / "cut.gguf", truncate_to=good.stat().st_size - 100)
    assert "tensor_out_of_bounds" in {p.code for p in dense_problems(truncated)}
    assert [p.code for p in dense_problems(tmp_path / "missing.gguf")] == ["file_missing"]
    data = good.read_bytes()
    key = GRAPH_KEY.encode()
    broken = tmp_path / "graph.gguf"
    broken.write_bytes(data.replace(b'"Relu"', b'"Conv"', 1))
    assert [p.code for p in dense_problems(broken)] == ["bad_graph"]
    assert key in data


def test_mapping_inputs_and_errors(tmp_path: Path, mlp: tuple[Path, onnx.ModelProto]) -> None:
    quantize(mlp[0], tmp_path / "m.gguf", "tq2_0", backend="numpy")
    dense = bitnet_sdk.load(tmp_path / "m.gguf", backend="numpy")
    x = np.ones((2, 20), np.float32)
    np.testing.assert_array_equal(dense.predict({"input": x}).output, dense.predict(x).output)
    with pytest.raises(ValueError, match=r"missing input 'input'"):
        dense.predict({"other": x})
    with pytest.raises(ValueError, match=r"input has 19 features, the layer expects 20"):
        dense.predict(np.ones((2, 19), np.float32))
    assert set(dense.predict(x).to_dict()) == {"outputs", "probabilities", "labels"}
