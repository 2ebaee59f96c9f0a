"""Quantizing a BitNet language model (checkpoint or GGUF) into a ternary GGUF file.

Projections become ternary: float weights by BitNet's absmean rule, or exactly when they already
hold ternary values (packed checkpoints, ternary-valued float files, ternary GGUF types).
Everything else is kept in high precision as the recipe says. The output architecture is
llama.cpp's ``bitnet`` for TQ1_0/TQ2_0 and bitnet.cpp's for I2_S (``bitnet-b1.58`` for
squared-ReLU models, ``bitnet`` otherwise, or the source's own bitnet.cpp name), unless ``arch``
is given. The file is validated (``bitnet_sdk.model.validate``) and measured before it is
published under its final name.

Tensors are encoded on the process's quantization pool (``quantization.parallel``), a few
ahead of the writer, and written in order. BF16 tensors (real checkpoints) take the fast path
of :mod:`bitnet_sdk.quantization.bf16`, byte-equal to the reference path every other source
takes; ``LLMOptions(fast=False)`` forces the reference path.
"""

from __future__ import annotations

import math
import time
from collections import deque
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType

from bitnet_sdk import formats
from bitnet_sdk.backends.base import Backend
from bitnet_sdk.formats.constants import (
    ARCH_BITNET,
    ARCH_BITNET_25,
    ARCH_BITNET_B158,
    BITNET_ARCHITECTURES,
)
from bitnet_sdk.model.gguf_file import NotTernaryError, ternarize_rows, type_name
from bitnet_sdk.model.validate import validate
from bitnet_sdk.quantization.bf16 import encode_f16, looks_ternary, quantize_projection
from bitnet_sdk.quantization.calibration import Calibration
from bitnet_sdk.quantization.errors import OutputInvalidError, QuantizationError
from bitnet_sdk.quantization.measure import llm_perplexity
from bitnet_sdk.quantization.parallel import blas_single_threaded, pool, workers
from bitnet_sdk.quantization.progress import Progress
from bitnet_sdk.quantization.recipe import Recipe, encode_float, float_nbytes
from bitnet_sdk.quantization.report import LayerReport, QuantizationReport, layer_report
from bitnet_sdk.quantization.sources.base import LLMSource, LLMTensor
from bitnet_sdk.quantization.writer import (
    AtomicGGUFWriter,
    common_scale,
    encode_projection,
    projection_nbytes,
)
from bitnet_sdk.ternary import TernaryTensor, dequantize, quantize_weights

__all__ = ["LLMOptions", "default_arch", "quantize_llm"]

_F32 = int(GGMLQuantizationType.F32)
_F16 = int(GGMLQuantizationType.F16)
_TQ = ("tq2_0", "tq1_0")


def default_arch(qtype: str, source: LLMSource) -> str:
    """The architecture name runtimes expect for ``qtype`` files of this model."""
    if qtype != "i2_s":
        return ARCH_BITNET
    if source.source_arch in (ARCH_BITNET_B158, ARCH_BITNET_25):
        return source.source_arch
    return ARCH_BITNET_B158 if source.hidden_act == "relu2" else ARCH_BITNET


@dataclass(frozen=True)
class LLMOptions:
    """What ``quantize`` passes down for a language model."""

    qtype: str
    recipe: Recipe
    calibration: Calibration
    texts: tuple[str, ...]
    max_tokens: int
    backend: Backend | None  # needed only to measure perplexity (``texts``)
    arch: str | None = None
    #: Take the BF16 fast path (``quantization.bf16``) where it applies; False runs only the
    #: reference path (the parity tests compare the two).
    fast: bool = True


@dataclass(frozen=True)
class _Planned:
    tensor: LLMTensor
    type_id: int
    scale_tensor: bool  # a one-element F32 "<proj>.scale" follows the projection

    @property
    def scale_name(self) -> str:
        return self.tensor.name.removesuffix(".weight") + ".scale"


def _stored_nbytes(p: _Planned, qtype: str) -> int:
    """Bytes a planned tensor takes in the file (with a projection's one-element scale)."""
    if p.tensor.projection:
        rows, cols = p.tensor.shape
        return projection_nbytes(qtype, (rows, cols))[1] + 4 * int(p.scale_tensor)
    return float_nbytes(p.type_id, p.tensor.shape)


def _plan(source: LLMSource, opts: LLMOptions, out: AtomicGGUFWriter) -> list[_Planned]:
    planned: list[_Planned] = []
    for t in source.tensors:
        if t.projection:
            opts.recipe.check_llm_projection(t.name, t.source_name)
            type_id, nbytes = projection_nbytes(opts.qtype, (t.shape[0], t.shape[1]))
            p = _Planned(t, type_id, t.exact_scale and (opts.qtype in _TQ or type_id == _F16))
            out.plan(t.name, t.shape, type_id, nbytes)
            if p.scale_tensor:
                out.plan(p.scale_name, (1,), _F32, 4)
        else:
            p = _Planned(t, opts.recipe.kept_type(t.shape), False)
            out.plan(t.name, t.shape, p.type_id, float_nbytes(p.type_id, t.shape))
        planned.append(p)
    return planned


def _ternary(value: np.ndarray | TernaryTensor, name: str, qtype: str, warnings: list[str]) -> tuple[TernaryTensor, np.ndarray]:
    """(ternary tensor to store, float matrix it stands for)."""
    if isinstance(value, TernaryTensor):
        t, w = value, dequantize(value)
    else:
        w = np.asarray(value, dtype=np.float32)
        try:
            t = ternarize_rows(w, name)  # already ternary-valued: keep exactly
        except NotTernaryError:
            t = quantize_weights(w)
    if qtype == "i2_s" and common_scale(t) is None:
        warnings.append(f"{name}: per-row scales cannot be stored in I2_S (one scale per tensor); requantized")
        t = quantize_weights(dequantize(t))
    return t, w


@dataclass
class _Encoded:
    """One planned tensor, encoded (by a pool thread): what to write, in order, and what to report."""

    writes: list[tuple[str, np.ndarray]]
    layer: LayerReport | None = None
    warnings: list[str] = field(default_factory=list)
    fast: bool = False  # encoded by the BF16 fast path


def _encode_kept(p: _Planned, source: LLMSource, opts: LLMOptions) -> _Encoded:
    name = p.tensor.name
    raw = source.read_bf16(name) if opts.fast and p.type_id == _F16 else None
    data = encode_f16(raw) if raw is not None else None
    if data is not None:
        return _Encoded([(name, data)], fast=True)
    return _Encoded([(name, encode_float(p.type_id, np.asarray(source.read(name), dtype=np.float32)))])


def _encode_fast(p: _Planned, source: LLMSource, opts: LLMOptions, calib: np.ndarray) -> _Encoded | None:
    """The BF16 fast path (``quantization.bf16``); None when the reference path must run."""
    t = p.tensor
    raw = source.read_bf16(t.name)
    if raw is None or raw.ndim != 2 or p.scale_tensor or p.type_id == _F16:
        return None
    fast = quantize_projection(raw, opts.qtype, calib)
    if fast is None:
        return None
    rep = LayerReport(t.name, list(t.shape), t.source_type, type_name(fast.type_id), fast.relative_error,
                      fast.output_cosine, fast.output_cosine_min)
    rep.lossless = rep.relative_error == 0.0
    return _Encoded([(t.name, fast.data)], rep, fast=True)


def _encode(p: _Planned, source: LLMSource, opts: LLMOptions, calib: np.ndarray | None) -> _Encoded:
    """Encode one planned tensor (runs on a pool thread; touches no shared state)."""
    t = p.tensor
    if not t.projection:
        return _encode_kept(p, source, opts)
    assert calib is not None
    if opts.fast:
        done = _encode_fast(p, source, opts, calib)
        if done is not None:
            return done
    out = _Encoded([])
    tern, w = _ternary(source.read(t.name), t.name, opts.qtype, out.warnings)
    enc = encode_projection(opts.qtype, tern, scale_tensor=p.scale_tensor)
    if enc.type_id != p.type_id:
        raise QuantizationError(f"{t.name}: encoded as {type_name(enc.type_id)}, planned {type_name(p.type_id)}")
    out.writes.append((t.name, enc.data))
    if p.scale_tensor:
        out.writes.append((p.scale_name, np.array([enc.scale], dtype="<f4")))
    if enc.type_id == _F16:
        out.warnings.append(f"{t.name}: {t.shape[1]} columns do not fit {opts.qtype} blocks; stored as ternary F16")
    rep = layer_report(t.name, w, enc.stored, calib, source_type=t.source_type, output_type=type_name(enc.type_id))
    rep.lossless = rep.relative_error == 0.0
    out.layer = rep
    return out


def _heavy(p: _Planned, source: LLMSource, opts: LLMOptions) -> bool:
    """Whether encoding ``p`` takes the reference path, which holds several float32 copies of
    the tensor (the BF16 fast path holds chunks and its output only)."""
    raw = source.read_bf16(p.tensor.name) if opts.fast else None
    if raw is None:
        return True
    return p.tensor.projection and raw.ndim == 2 and looks_ternary(raw)


def _write_all(planned: list[_Planned], source: LLMSource, opts: LLMOptions, out: AtomicGGUFWriter,
               report: QuantizationReport, progress: Progress) -> int:
    """Encode tensors on the process's pool, a few ahead, and write them in plan order; returns
    how many took the BF16 fast path.

    Memory stays near one tensor: at most ``workers() + 1`` encoded tensors are held, and only
    one job on the reference path is in flight at a time."""
    ex = pool()
    ahead = workers() + 1
    pending: deque[tuple[_Planned, bool, Future[_Encoded]]] = deque()
    nxt = fast = 0

    def fill() -> None:
        nonlocal nxt
        while nxt < len(planned) and len(pending) < ahead:
            p = planned[nxt]
            heavy = _heavy(p, source, opts)
            if heavy and any(h for _, h, _ in pending):
                return
            t = p.tensor
            calib = opts.calibration.layer_inputs(t.name, t.source_name, t.shape[1]) if t.projection else None
            pending.append((p, heavy, ex.submit(_encode, p, source, opts, calib)))
            nxt += 1

    try:
        fill()
        while pending:
            p, _, future = pending.popleft()
            done = future.result()
            fill()
            for name, data in done.writes:
                out.write(name, data)
            report.parameters += math.prod(p.tensor.shape)
            report.warnings.extend(done.warnings)
            fast += done.fast
            if done.layer is None:
                report.tensors_kept += 1
            else:
                report.layers.append(done.layer)
                report.tensors_quantized += 1
            progress.step(p.tensor.name)
    finally:
        for _, _, future in pending:
            future.cancel()
        wait([f for _, _, f in pending])
    return fast


def quantize_llm(
    source: LLMSource, dst: Path, opts: LLMOptions, progress: Progress, report: QuantizationReport
) -> QuantizationReport:
    """Write ``source`` quantized to ``dst`` (atomically) and fill ``report``."""
    arch = opts.arch or default_arch(opts.qtype, source)
    if arch not in BITNET_ARCHITECTURES:
        raise QuantizationError(f"arch must be one of {BITNET_ARCHITECTURES} for a language model, got {arch!r}")
    report.arch = arch
    stages = report.stages
    with AtomicGGUFWriter(dst, arch) as out:
        source.write_metadata(out.gguf)
        out.gguf.add_file_type(formats.FORMATS[opts.qtype].file_type)
        out.gguf.add_quantization_version(2)
        planned = _plan(source, opts, out)
        progress.start(len(planned) + 2, "plan")
        t0 = time.perf_counter()
        out.begin()
        with blas_single_threaded():
            fast = _write_all(planned, source, opts, out, report, progress)
        out.finish()
        report.quantized_bytes = out.path.stat().st_size
        report.quantized_weight_bytes = sum(_stored_nbytes(p, opts.qtype) for p in planned)
        stages["quantize"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # Structure (header, directory, shapes, types, vocabulary) is always re-checked. Decoding
        # every tensor again re-checks our own encoders: the fast path's codes come from lookup
        # tables and its F16 values are range-checked as they are encoded (and it is tested
        # byte-equal to the reference path), so runs that used it skip that second read.
        checked = validate(out.path, check_data=fast == 0)
        if not checked.ok:
            raise OutputInvalidError(checked.problems)
        stages["validate"] = time.perf_counter() - t0
        progress.step("validate")
        if opts.texts and opts.backend is not None:
            t0 = time.perf_counter()
            report.calibration = llm_perplexity(out.path, source, opts.texts, opts.max_tokens, opts.backend)
            stages["perplexity"] = time.perf_counter() - t0
        progress.step("measure")
        out.publish()
    return report
