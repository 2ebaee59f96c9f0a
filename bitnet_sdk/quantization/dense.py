"""Quantizing an ONNX feed-forward network into a ternary dense model (``bitnet-dense`` GGUF).

Every ``Linear`` weight (a ``MatMul``/``Gemm`` with a constant matrix) is quantized with BitNet's
absmean rule — on the real ``[out, in]`` matrix, then zero-padded to the format's block size, so
padding does not move the scale — unless the recipe keeps it in high precision (patterns match
the GGUF name ``dense.<i>.weight``, the ONNX initializer or the node name). Biases and other
constants stay F32. The written file is re-validated, loaded and run against the original ONNX
graph (``onnx.reference``) on calibration inputs before it is published.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType

from bitnet_sdk import formats
from bitnet_sdk.backends.base import Backend
from bitnet_sdk.dense.format import ARCH, GRAPH_KEY, dense_problems
from bitnet_sdk.dense.graph import Graph, Node
from bitnet_sdk.dense.model import load as load_dense
from bitnet_sdk.model.gguf_file import type_name
from bitnet_sdk.quantization.calibration import Calibration
from bitnet_sdk.quantization.errors import OutputInvalidError, UnsupportedSourceError
from bitnet_sdk.quantization.measure import dense_agreement
from bitnet_sdk.quantization.progress import Progress
from bitnet_sdk.quantization.recipe import Recipe, encode_float, float_nbytes
from bitnet_sdk.quantization.report import QuantizationReport, layer_report
from bitnet_sdk.quantization.sources.onnx import OnnxSource
from bitnet_sdk.quantization.writer import (
    AtomicGGUFWriter,
    encode_projection,
    projection_nbytes,
)
from bitnet_sdk.ternary import TernaryTensor, quantize_weights

__all__ = ["DenseOptions", "quantize_dense"]

_F32 = int(GGMLQuantizationType.F32)


@dataclass(frozen=True)
class DenseOptions:
    """What ``quantize`` passes down for a dense model."""

    qtype: str
    recipe: Recipe
    calibration: Calibration
    backend: Backend


def _layout(src: OnnxSource, opts: DenseOptions) -> tuple[Graph, set[str]]:
    """The graph with padded widths for ternary layers, and the names of ternary weights."""
    block = formats.FORMATS[opts.qtype].block_size
    ternary: set[str] = set()
    nodes: list[Node] = []
    for node in src.graph.nodes:
        lin = node.linear
        if lin is not None and opts.recipe.user_keeps(lin.weight, lin.source, node.name) is None:
            ternary.add(lin.weight)
            padded = math.ceil(lin.in_features / block) * block
            node = dataclasses.replace(node, linear=dataclasses.replace(lin, padded_in=padded))
        nodes.append(node)
    return dataclasses.replace(src.graph, nodes=tuple(nodes)), ternary


def _write_weight(node: Node, src: OnnxSource, opts: DenseOptions, out: AtomicGGUFWriter,
                  ternary: set[str], report: QuantizationReport) -> None:
    lin = node.linear
    assert lin is not None
    w = src.tensors[lin.weight]
    report.parameters += w.size
    if lin.weight not in ternary:
        out.write(lin.weight, encode_float(opts.recipe.kept_type(w.shape), w))
        report.tensors_kept += 1
        return
    t = quantize_weights(w)
    q = np.zeros((lin.out_features, lin.padded_in), dtype=np.int8)
    q[:, : lin.in_features] = t.q
    enc = encode_projection(opts.qtype, TernaryTensor(q, t.scale))  # no .scale tensor: fp16 scale
    out.write(lin.weight, enc.data)
    report.layers.append(layer_report(lin.weight, w, enc.stored, None, source_type="F32",
                                      output_type=type_name(enc.type_id)))
    report.tensors_quantized += 1


def quantize_dense(
    src: OnnxSource, dst: Path, opts: DenseOptions, progress: Progress, report: QuantizationReport
) -> QuantizationReport:
    """Write ``src`` as a ternary dense model to ``dst`` (atomically) and fill ``report``."""
    if not src.graph.linears:
        raise UnsupportedSourceError(f"{src.path}: the graph has no MatMul/Gemm layer with constant weights")
    graph, ternary = _layout(src, opts)
    report.arch = ARCH
    with AtomicGGUFWriter(dst, ARCH) as out:
        gw = out.gguf
        gw.add_name(src.name)
        gw.add_file_type(formats.FORMATS[opts.qtype].file_type)
        gw.add_quantization_version(2)
        gw.add_string(GRAPH_KEY, graph.to_json())
        order: list[tuple[str, Node | None]] = []
        for node in graph.linears:
            lin = node.linear
            assert lin is not None
            shape = (lin.out_features, lin.padded_in)
            if lin.weight in ternary:
                type_id, nbytes = projection_nbytes(opts.qtype, shape)
            else:
                type_id = opts.recipe.kept_type(shape)
                nbytes = float_nbytes(type_id, shape)
            out.plan(lin.weight, shape, type_id, nbytes)
            order.append((lin.weight, node))
            report.quantized_weight_bytes += nbytes
            if lin.bias:
                out.plan(lin.bias, (lin.out_features,), _F32, 4 * lin.out_features)
                order.append((lin.bias, None))
        for tensor in graph.constants.values():
            value = src.tensors[tensor]
            out.plan(tensor, value.shape or (1,), _F32, 4 * max(value.size, 1))
            order.append((tensor, None))
        progress.start(len(order) + 2, "plan")
        t0 = time.perf_counter()
        out.begin()
        for name, weight_of in order:
            if weight_of is not None:
                _write_weight(weight_of, src, opts, out, ternary, report)
            else:
                value = src.tensors[name]
                out.write(name, encode_float(_F32, value.reshape(value.shape or (1,))))
                report.parameters += value.size
                report.quantized_weight_bytes += 4 * max(value.size, 1)
            progress.step(name)
        out.finish()
        report.quantized_bytes = out.path.stat().st_size
        report.stages["quantize"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        problems = dense_problems(out.path)
        if problems:
            raise OutputInvalidError(problems)
        report.stages["validate"] = time.perf_counter() - t0
        progress.step("validate")
        t0 = time.perf_counter()
        model = load_dense(out.path, opts.backend)
        feeds = opts.calibration.model_inputs(graph.inputs)
        report.agreement, per_layer = dense_agreement(model, src.model, src.tensors, feeds)
        report.agreement["calibration"] = opts.calibration.describe()
        for rep in report.layers:
            rep.output_cosine, rep.output_cosine_min = per_layer.get(rep.name, (None, None))
        report.stages["measure"] = time.perf_counter() - t0
        progress.step("measure")
        out.publish()
    return report
