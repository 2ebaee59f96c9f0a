"""``quantize(src, dst, qtype)``: any supported model in, a ternary GGUF file out, and a report.

This is the stable entry point the CLI (``bitnet quantize``) and the server's quantization jobs
call. Sources, told apart by what they are:

* a Hugging Face checkpoint folder (``config.json`` + ``*.safetensors``/sharded, or PyTorch
  ``*.bin`` with ``torch`` installed, + ``tokenizer.json``), or one weights file with a
  ``config.json`` beside it → a BitNet language model (llama.cpp ``bitnet`` / bitnet.cpp);
* a ``.gguf`` BitNet language model: F32/F16/BF16 weights are quantized, ternary ones converted
  to the target type without loss (I2_S ⇄ TQ2_0 ⇄ TQ1_0, renaming bitnet.cpp ⇄ llama.cpp
  architecture keys);
* an ``.onnx`` feed-forward network → a ternary dense model (``bitnet-dense``), which
  ``bitnet_sdk.load(path).predict(inputs)`` runs.

Targets: ``tq2_0``, ``tq1_0`` (llama.cpp) and ``i2_s`` (bitnet.cpp). Only ``format="gguf"``.

Safety: the output is written to a temporary file in ``dst``'s folder, re-validated, measured and
only then renamed to ``dst``; on any failure, exception or cancellation nothing is left behind.
``progress(done, total, stage)`` is called after every tensor and stage; returning ``False`` or
raising :class:`~bitnet_sdk.quantization.errors.Cancelled` raises
:class:`~bitnet_sdk.quantization.errors.QuantizationCancelled` after clean-up.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from bitnet_sdk.backends import get as get_backend
from bitnet_sdk.backends.base import Backend
from bitnet_sdk.formats import qtype_name
from bitnet_sdk.quantization.calibration import Calibration, CalibrationSpec
from bitnet_sdk.quantization.dense import DenseOptions, quantize_dense
from bitnet_sdk.quantization.errors import QuantizationError, UnsupportedSourceError
from bitnet_sdk.quantization.llm import LLMOptions, quantize_llm
from bitnet_sdk.quantization.progress import Progress, ProgressCallback
from bitnet_sdk.quantization.recipe import Recipe
from bitnet_sdk.quantization.report import QuantizationReport
from bitnet_sdk.quantization.sources.base import LLMSource

__all__ = ["FORMATS", "SOURCE_KINDS", "detect_source", "quantize"]

logger = logging.getLogger(__name__)

FORMATS = ("gguf",)
#: What ``detect_source`` may answer.
SOURCE_KINDS = ("hf", "gguf", "onnx", "torch")
_GGUF_MAGIC = b"GGUF"


def detect_source(path: Path) -> str:
    """The kind of model at ``path``: ``hf``, ``gguf``, ``onnx`` or ``torch``.

    Raises ``FileNotFoundError`` for a missing path and ``UnsupportedSourceError`` otherwise.
    """
    if not path.exists():
        raise FileNotFoundError(f"no such source: {path}")
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf"
        raise UnsupportedSourceError(f"{path} is a folder without config.json (not a Hugging Face checkpoint)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == _GGUF_MAGIC:
        return "gguf"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".bin", ".pt", ".pth") and (path.parent / "config.json").is_file():
        return "torch"
    if suffix == ".safetensors" and (path.parent / "config.json").is_file():
        return "hf"
    raise UnsupportedSourceError(
        f"{path}: not a supported source (GGUF file, .onnx model, Hugging Face checkpoint folder, "
        f"or .safetensors/.bin/.pt weights with a config.json beside them)"
    )


def _open_llm(kind: str, path: Path) -> LLMSource:
    if kind == "gguf":
        from bitnet_sdk.quantization.sources.gguf import GGUFSource

        return GGUFSource(path)
    from bitnet_sdk.quantization.sources.hf import HFSource

    return HFSource(path)


def _texts(text: str | Sequence[str] | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return (text,) if isinstance(text, str) else tuple(str(t) for t in text)


def quantize(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    qtype: str = "tq2_0",
    *,
    format: str = "gguf",
    progress: ProgressCallback | None = None,
    keep_high_precision: Iterable[str] | str | None = None,
    high_precision_type: str | None = None,
    calibration: CalibrationSpec = None,
    text: str | Sequence[str] | None = None,
    max_tokens: int = 512,
    arch: str | None = None,
    backend: str | Backend = "auto",
    seed: int = 0,
) -> QuantizationReport:
    """Quantize the model at ``src`` to ternary ``qtype`` and write it to ``dst``.

    Arguments:
        qtype: ``"tq2_0"`` | ``"tq1_0"`` | ``"i2_s"`` (or the GGML type id).
        format: output container; only ``"gguf"``.
        progress: ``callback(done, total, stage)``; ``False`` or ``Cancelled`` stops the run.
        keep_high_precision: glob patterns of tensors to leave out of ternary quantization
            (dense models; a language model's projections must be ternary).
        high_precision_type: ``f32`` | ``f16`` | ``bf16`` | ``q8_0`` for kept matrices
            (default: ``f16`` for language models, ``f32`` for dense models).
        calibration: inputs the accuracy is measured on (see ``bitnet_sdk.quantization.calibration``).
        text: text(s) to measure perplexity on (language models), each cut to ``max_tokens``.
        arch: output architecture name of a language model (default: by ``qtype``).
        backend: backend running the measurements (name, ``"auto"`` or an instance).
        seed: seed of the random calibration inputs.

    Returns a :class:`~bitnet_sdk.quantization.report.QuantizationReport`. Raises
    ``FileNotFoundError`` (missing source or destination folder),
    :class:`~bitnet_sdk.quantization.errors.QuantizationError` subclasses (unsupported source,
    missing optional dependency, invalid output, cancellation) and ``ValueError`` for bad
    arguments; in every case ``dst`` is untouched.
    """
    t0 = time.perf_counter()
    try:
        qtype = qtype_name(qtype)
    except ValueError as exc:
        raise QuantizationError(str(exc)) from exc
    if format != "gguf":
        raise QuantizationError(f"unsupported output format {format!r}; supported: {', '.join(FORMATS)}")
    src_path, dst_path = Path(src), Path(dst)
    kind = detect_source(src_path)
    if dst_path.exists() and dst_path.resolve() == src_path.resolve():
        raise QuantizationError("the destination is the source; write to another path")
    if max_tokens < 2:
        raise QuantizationError(f"max_tokens must be at least 2, got {max_tokens}")
    texts = _texts(text)
    # the backend only runs measurements: resolve it (plugin discovery, JIT) only when needed
    needs_backend = kind == "onnx" or bool(texts)
    backend_obj = (get_backend(backend) if isinstance(backend, str) else backend) if needs_backend else None
    calib = Calibration(calibration, seed)
    report = QuantizationReport(str(src_path), str(dst_path), kind, "llm", qtype, format, "")
    prog = Progress(progress)
    if kind == "onnx":
        from bitnet_sdk.quantization.sources.onnx import OnnxSource

        report.model_kind = "dense"
        source = OnnxSource(src_path)
        try:
            report.original_bytes = source.original_bytes
            recipe = Recipe.build(keep_high_precision, high_precision_type, "f32")
            assert backend_obj is not None
            quantize_dense(source, dst_path, DenseOptions(qtype, recipe, calib, backend_obj), prog, report)
        finally:
            source.close()
    else:
        with _open_llm(kind, src_path) as llm:
            report.original_bytes = llm.original_bytes
            recipe = Recipe.build(keep_high_precision, high_precision_type, "f16")
            opts = LLMOptions(qtype, recipe, calib, texts, max_tokens, backend_obj, arch)
            quantize_llm(llm, dst_path, opts, prog, report)
    report.seconds = time.perf_counter() - t0
    logger.info(
        "quantized",
        extra={"source": str(src_path), "output": str(dst_path), "qtype": qtype,
               "seconds": round(report.seconds, 3), "ratio": round(report.compression_ratio, 3)},
    )
    return report
