"""Load or validate any model file: a language model (``bitnet_sdk.model``) or a dense one.

The model package reads and runs BitNet language models and knows nothing of the dense
models imported from ONNX (``bitnet_sdk.dense``, which builds on it); this module, above
both, hands each file to the right one by its GGUF architecture. ``bitnet_sdk.load`` and
``bitnet_sdk.validate`` are these functions.
"""

from __future__ import annotations

import os
from typing import Any

from bitnet_sdk.backends.base import Backend
from bitnet_sdk.dense.format import dense_problems, graph_summary, read_graph
from bitnet_sdk.dense.model import DenseModel
from bitnet_sdk.dense.model import load as load_dense
from bitnet_sdk.formats.constants import ARCH_BITNET_DENSE
from bitnet_sdk.model import loader
from bitnet_sdk.model import validate as checks
from bitnet_sdk.model.gguf_file import ModelFile
from bitnet_sdk.model.loader import Model
from bitnet_sdk.model.metadata import MEMORY_FORMULA, model_metadata
from bitnet_sdk.model.validate import ValidationReport

__all__ = ["load", "metadata", "validate"]


def load(path: str | os.PathLike[str], backend: str | Backend = "auto",
         device: str = "auto") -> Model | DenseModel:
    """A runnable model: see :func:`bitnet_sdk.model.loader.load` (dense files ignore ``device``)."""
    return loader.load(path, backend, device, other_archs={ARCH_BITNET_DENSE: load_dense})


def validate(path: str | os.PathLike[str], *, check_data: bool = True) -> ValidationReport:
    """Every problem of a model file: see :func:`bitnet_sdk.model.validate.validate`."""
    return checks.validate(path, check_data=check_data,
                           other_archs={ARCH_BITNET_DENSE: dense_problems})


def metadata(path: str | os.PathLike[str] | ModelFile) -> dict[str, Any]:
    """Describe any model file: see :func:`bitnet_sdk.model.metadata.model_metadata`."""
    return model_metadata(path, other_archs={ARCH_BITNET_DENSE: _dense_metadata})


def _dense_metadata(mf: ModelFile, out: dict[str, Any], weights: int) -> dict[str, Any]:
    """A dense model's description: ``model`` is ``None``, ``dense`` its graph summary.

    It needs no KV cache: its memory is the weights alone.
    """
    out["model"] = None
    try:
        out["dense"] = graph_summary(read_graph(mf))
    except ValueError as exc:
        out["dense"] = None
        out["errors"] = [str(exc)]
    out["memory"] = {"weights_bytes": weights, "kv_cache_bytes": 0, "total_bytes": weights,
                     "formula": MEMORY_FORMULA}
    return out
