"""What a model file is: validated or not, and if so its metadata, kind and storage type.

:func:`inspect_file` is the one check every file passes before the registry
lets a row point at it (uploads, the demo model, a quantizer's output).
Files are checked by :func:`bitnet_sdk.loading.validate` (which holds
dense models, GGUF architecture ``bitnet-dense``, to their own rules); the
metadata is :func:`bitnet_sdk.model.metadata.model_metadata`'s, plus ``kind``
and input/output shapes for dense models. Blocking: reads the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitnet_sdk import formats
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.models import MODEL_KINDS

__all__ = ["MODEL_QTYPES", "FileReport", "inspect_file"]

#: Storage types a model's ``qtype`` may name (the spec's ``ModelQType``).
MODEL_QTYPES = ("f32", "f16", "bf16", "q8_0", *formats.QTYPES)


@dataclass(frozen=True)
class FileReport:
    """What :func:`inspect_file` found: the validation report and, when valid, the metadata."""

    validation: dict[str, Any]
    metadata: dict[str, Any] | None
    kind: str | None
    qtype: str | None

    @property
    def ok(self) -> bool:
        return bool(self.validation["ok"])


def inspect_file(path: Path) -> FileReport:
    """Validate a model file and, when valid, read its metadata (reads the whole file)."""
    from bitnet_sdk.formats.constants import ARCH_BITNET_DENSE
    from bitnet_sdk.loading import metadata as model_metadata
    from bitnet_sdk.loading import validate

    result = validate(path)
    validation = {
        "ok": result.ok,
        "checked_at": utcnow().isoformat().replace("+00:00", "Z"),
        "arch": result.arch,
        "tensors": result.n_tensors,
        "problems": [{**p.to_dict(), "severity": "error"} for p in result.problems],
    }
    if not result.ok:
        return FileReport(validation, None, None, None)
    metadata = model_metadata(path)
    metadata.pop("path", None)  # where the upload happened to be, not where the model lives
    if result.arch == ARCH_BITNET_DENSE:
        metadata.update(_dense_metadata(path))
    return FileReport(validation, metadata, _kind(metadata), _qtype(metadata))


def _dense_metadata(path: Path) -> dict[str, Any]:
    """``kind`` and the shapes of one input and one output sample (batch dimension dropped)."""
    from bitnet_sdk.dense.format import read_graph
    from bitnet_sdk.model.gguf_file import read_model

    graph = read_graph(read_model(path, strict=False))

    def sample_shape(values: Any) -> list[int] | None:
        if len(values) != 1:
            return None
        shape = list(values[0].shape)
        if shape and shape[0] is None:
            shape = shape[1:]
        return shape if all(isinstance(d, int) for d in shape) else None

    return {"kind": "dense", "input_shape": sample_shape(graph.inputs),
            "output_shape": sample_shape(graph.outputs)}


def _kind(metadata: dict[str, Any]) -> str:
    declared = metadata.get("kind")
    return str(declared) if declared in MODEL_KINDS else "llm"


def _qtype(metadata: dict[str, Any]) -> str | None:
    quant = metadata.get("quantization") or {}
    ternary = quant.get("ternary_types") or []
    if ternary:
        name = str(ternary[0]).lower()
    else:  # a float model: the type holding most parameters
        types = quant.get("tensor_types") or {}
        if not types:
            return None
        name = max(types, key=lambda t: types[t].get("parameters", 0)).lower()
    return name if name in MODEL_QTYPES else None
