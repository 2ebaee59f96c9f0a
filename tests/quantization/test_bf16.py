"""The BF16 fast path against the reference path: byte-equal output, same report figures."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from bitnet_sdk.formats import QTYPES
from bitnet_sdk.quantization import bf16
from bitnet_sdk.quantization.calibration import Calibration
from bitnet_sdk.quantization.llm import LLMOptions, quantize_llm
from bitnet_sdk.quantization.native import kernels as native_kernels
from bitnet_sdk.quantization.progress import Progress
from bitnet_sdk.quantization.recipe import Recipe, encode_float
from bitnet_sdk.quantization.report import QuantizationReport, layer_report
from bitnet_sdk.quantization.sources.hf import HFSource
from bitnet_sdk.quantization.writer import encode_projection
from bitnet_sdk.ternary import quantize_weights

from ._support import build_hf_checkpoint


def _bits(w: np.ndarray) -> np.ndarray:
    """float32 -> BF16 bits (truncation: any BF16 tensor will do)."""
    return (np.ascontiguousarray(w, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _weights(rng: np.random.Generator, shape: tuple[int, int], spread: float) -> np.ndarray:
    """Gaussian weights times log-uniform factors (``spread`` decades): stresses the float64 sum."""
    return (rng.standard_normal(shape) * 0.02 * 10 ** rng.uniform(-spread, 0, shape)).astype(np.float32)


@pytest.mark.parametrize("native", [True, False], ids=["native", "numpy"])
@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize(("shape", "spread"), [((16, 256), 0.0), ((300, 512), 6.0), ((96, 2048), 30.0)])
def test_projection_is_byte_equal_to_the_reference(qtype: str, shape: tuple[int, int], spread: float, native: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("BITNET_QUANT_NATIVE", "on" if native else "off")
    assert (native_kernels() is not None) == native  # this machine can build the kernels
    rng = np.random.default_rng(shape[0])
    raw = _bits(_weights(rng, shape, spread))
    raw[-(shape[0] // 4) :] = 0  # zero rows: blocks whose scale is stored as 0
    x = rng.standard_normal((16, shape[1])).astype(np.float32)
    fast = bf16.quantize_projection(raw, qtype, x)
    assert fast is not None
    w = _f32(raw)
    enc = encode_projection(qtype, quantize_weights(w))
    np.testing.assert_array_equal(fast.data, enc.data)
    assert fast.type_id == enc.type_id
    assert fast.stored_scale == float(enc.stored.scale[0])
    rep = layer_report("w", w, enc.stored, x, source_type="BF16", output_type="x")
    assert fast.relative_error == pytest.approx(rep.relative_error, rel=1e-12)
    assert fast.output_cosine == pytest.approx(rep.output_cosine, rel=1e-6)
    assert fast.output_cosine_min == pytest.approx(rep.output_cosine_min, rel=1e-6)


def test_the_sum_in_numpy_order_is_numpys() -> None:
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (3, 8191), (5, 8193), (40, 4096), (300, 700)]:
        raw = _bits(_weights(rng, shape, 30.0))
        assert bf16.absmean_reference_order(raw) == float(np.mean(np.abs(_f32(raw)), dtype=np.float64))


def test_tensors_the_fast_path_does_not_cover_are_declined() -> None:
    rng = np.random.default_rng(2)
    w = _weights(rng, (8, 256), 0.0)
    with_nan = w.copy()
    with_nan[3, 5] = np.nan
    assert bf16.quantize_projection(_bits(with_nan), "tq2_0", None) is None
    ternary = np.sign(w) * np.float32(0.25)  # already ternary: the reference keeps it exactly
    assert bf16.quantize_projection(_bits(ternary), "tq2_0", None) is None
    assert bf16.quantize_projection(np.zeros((8, 256), np.uint16), "i2_s", None) is None


@pytest.mark.parametrize("native", ["on", "off"])
def test_f16_encoding_is_the_references(native: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITNET_QUANT_NATIVE", native)
    rng = np.random.default_rng(4)
    raw = _bits(rng.standard_normal((70, 300)).astype(np.float32) * 300)
    got = bf16.encode_f16(raw)
    assert got is not None
    np.testing.assert_array_equal(got.view(np.uint16), encode_float(1, _f32(raw)).view(np.uint16))
    raw[1, 2] = _bits(np.array([70000.0], np.float32))[0]  # beyond the F16 range
    assert bf16.encode_f16(raw) is None


def _to_bf16_checkpoint(folder: Path) -> None:
    """Rewrite the checkpoint's float32 safetensors file as BF16 (numpy has no bfloat16)."""
    path = folder / "model.safetensors"
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    header.pop("__metadata__", None)
    data = []
    offset = 0
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = entry["data_offsets"]
        values = np.frombuffer(blob[8 + n + begin : 8 + n + end], dtype="<f4")
        data.append(_bits(values).astype("<u2").tobytes())
        header[name] = {"dtype": "BF16", "shape": entry["shape"], "data_offsets": [offset, offset + len(data[-1])]}
        offset += len(data[-1])
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(data))


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bf16") / "ckpt"
    build_hf_checkpoint(folder, seed=3, hidden_size=256, intermediate_size=512, num_hidden_layers=2)
    _to_bf16_checkpoint(folder)
    return folder


def _run(src: Path, dst: Path, qtype: str, fast: bool) -> QuantizationReport:
    report = QuantizationReport(str(src), str(dst), "hf", "llm", qtype, "gguf", "")
    opts = LLMOptions(qtype, Recipe.build(None, None, "f16"), Calibration(None, 0), (), 512, None, fast=fast)
    with HFSource(src) as source:
        return quantize_llm(source, dst, opts, Progress(None), report)


@pytest.mark.parametrize("qtype", QTYPES)
def test_fast_and_reference_pipelines_write_the_same_file(bf16_checkpoint: Path, tmp_path: Path, qtype: str) -> None:
    fast = _run(bf16_checkpoint, tmp_path / "fast.gguf", qtype, fast=True)
    ref = _run(bf16_checkpoint, tmp_path / "ref.gguf", qtype, fast=False)
    assert (tmp_path / "fast.gguf").read_bytes() == (tmp_path / "ref.gguf").read_bytes()
    assert fast.tensors_quantized == ref.tensors_quantized == 14
    for a, b in zip(fast.layers, ref.layers, strict=True):
        assert (a.name, a.shape, a.output_type) == (b.name, b.shape, b.output_type)
        assert a.relative_error == pytest.approx(b.relative_error, rel=1e-12)
        assert a.output_cosine == pytest.approx(b.output_cosine, rel=1e-6)
