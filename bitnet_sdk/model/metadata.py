"""``model_metadata``: what a model file is and what running it will cost.

The result is a plain JSON-ready dict (``bitnet inspect --json`` prints it and
the model registry stores it). Memory is estimated as

    weights  = bytes of tensor data in the file (the runtime maps it; ternary
               projections are repacked once into the backend's layout)
    kv_cache = 2 (K and V) * n_layers * context_length * n_kv_heads * head_dim * 4 bytes
    total    = weights + kv_cache

i.e. float32 keys and values for one sequence at the full trained context.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from typing import Any

from gguf import Keys, LlamaFileType

from bitnet_sdk import formats
from bitnet_sdk.model.config import ConfigError, ModelConfig
from bitnet_sdk.model.gguf_file import ModelFile, read_model
from bitnet_sdk.model.tokenizer import TokenizerError, TokenizerSpec

__all__ = ["MEMORY_FORMULA", "model_metadata"]

MEMORY_FORMULA = (
    "weights = tensor bytes in the file; "
    "kv_cache = 2 * n_layers * context_length * n_kv_heads * head_dim * 4 (float32); "
    "total = weights + kv_cache"
)


def _file_type_name(value: Any, labels: Collection[str]) -> str | None:
    """``general.file_type`` by name, given the tensor type names the file holds: a packed
    format's file type names it when the file holds that format (40 is bitnet.cpp's MOSTLY_I2_S
    in files holding I2_S; upstream llama.cpp later gave 40 to MOSTLY_Q1_0)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    for fmt in formats.FORMATS.values():
        if value == fmt.file_type and fmt.label in labels:
            return f"MOSTLY_{fmt.label}"
    try:
        return LlamaFileType(value).name
    except ValueError:
        return f"file_type_{value}"


def _quantization(mf: ModelFile) -> dict[str, Any]:
    """Per tensor type: count, parameters, bytes and bits per weight; ternary totals."""
    by_type: dict[str, dict[str, int]] = defaultdict(lambda: {"tensors": 0, "parameters": 0, "bytes": 0})
    ternary_params = ternary_bytes = 0
    for name, info in mf.tensors.items():
        entry = by_type[info.type_name]
        entry["tensors"] += 1
        entry["parameters"] += info.n_elements
        entry["bytes"] += info.n_bytes or 0
        if mf.is_projection(name):
            ternary_params += info.n_elements
            ternary_bytes += info.n_bytes or 0
    types = {
        t: {**e, "bits_per_weight": round(8 * e["bytes"] / e["parameters"], 4) if e["parameters"] else None}
        for t, e in sorted(by_type.items())
    }
    return {
        "file_type": _file_type_name(mf.metadata.get(Keys.General.FILE_TYPE), by_type),
        "tensor_types": types,
        "ternary_types": sorted({mf.tensors[n].type_name for n in mf.tensors if mf.is_projection(n)}),
        "ternary_bits_per_weight": round(8 * ternary_bytes / ternary_params, 4) if ternary_params else None,
    }


def _tokenizer(mf: ModelFile) -> dict[str, Any]:
    try:
        spec = TokenizerSpec.from_metadata(mf.metadata)
    except TokenizerError as exc:
        return {"error": str(exc)}
    return {
        "model": spec.model,
        "pre": spec.pre,
        "tokens": len(spec.tokens),
        "bos_id": spec.bos_id,
        "eos_id": spec.eos_id,
        "add_bos": spec.add_bos,
        "chat_template": spec.chat_template is not None,
    }


def _architecture(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "context_length": cfg.context_length,
        "layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "heads": cfg.n_heads,
        "kv_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "d_ff": cfg.d_ff,
        "vocab_size": cfg.vocab_size,
        "hidden_act": cfg.hidden_act,
        "rope_theta": cfg.rope_theta,
        "rope_style": cfg.rope_style,
        "rms_eps": cfg.rms_eps,
        "tie_embeddings": cfg.tie_embeddings,
    }


#: Describes a file of another architecture: ``(file, common keys, weight bytes) -> description``.
OtherArch = Callable[[ModelFile, dict[str, Any], int], dict[str, Any]]


def model_metadata(source: str | os.PathLike[str] | ModelFile,
                   other_archs: Mapping[str, OtherArch] | None = None) -> dict[str, Any]:
    """Describe a model file (path or opened :class:`ModelFile`).

    Keys: ``path``, ``file_size``, ``name``, ``architecture``, ``gguf_version``,
    ``tensors``, ``parameters``, ``ternary_parameters``, ``quantization``
    (per-type counts, bytes, bits per weight), ``model`` (hyper-parameters, or
    ``None`` with ``errors`` when the metadata is incomplete), ``tokenizer``,
    ``memory`` (``weights_bytes``, ``kv_cache_bytes``, ``total_bytes``,
    ``formula``). Raises ``GGUFFormatError`` / ``OSError`` for files that
    cannot be opened at all. Files whose architecture is a key of ``other_archs`` are
    described by that function (see :mod:`bitnet_sdk.loading`, which adds dense models).
    """
    mf = source if isinstance(source, ModelFile) else read_model(source, strict=False)
    weights = sum(info.n_bytes or 0 for info in mf.tensors.values())
    out: dict[str, Any] = {
        "path": str(mf.path),
        "file_size": mf.file_size,
        "name": mf.metadata.get(Keys.General.NAME),
        "architecture": mf.arch or None,
        "gguf_version": mf.version,
        "tensors": len(mf.tensors),
        "parameters": sum(info.n_elements for info in mf.tensors.values()),
        "ternary_parameters": sum(info.n_elements for n, info in mf.tensors.items() if mf.is_projection(n)),
        "quantization": _quantization(mf),
        "tokenizer": _tokenizer(mf),
        "errors": [],
    }
    if other_archs and mf.arch in other_archs:  # e.g. an ONNX-derived network: no LLM hyper-parameters
        return other_archs[mf.arch](mf, out, weights)
    try:
        cfg = ModelConfig.from_model_file(mf)
    except ConfigError as exc:
        out["model"] = None
        out["errors"] = [p.message for p in exc.problems]
        out["memory"] = {"weights_bytes": weights, "kv_cache_bytes": None, "total_bytes": None, "formula": MEMORY_FORMULA}
        return out
    kv = cfg.kv_cache_bytes()
    out["model"] = _architecture(cfg)
    out["memory"] = {"weights_bytes": weights, "kv_cache_bytes": kv, "total_bytes": weights + kv, "formula": MEMORY_FORMULA}
    return out
