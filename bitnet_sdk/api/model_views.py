"""JSON representations of model records, in the shapes of the spec's schemas.

``model_view`` → ``Model``; ``metadata_view`` → ``ModelMetadata`` (from what
:func:`bitnet_sdk.model.metadata.model_metadata` stored at upload);
``validation_view`` → ``ValidationReport``. Shared by every handler that
returns a model (the registry's, the quantizer's).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.store import ModelRecord

__all__ = ["metadata_view", "model_view", "utc_iso", "validation_view"]

API_BASE_PATH = "/v1"
#: GGUF ``tokenizer.ggml.model`` values by the family the API names.
_TOKENIZER_TYPES = {"gpt2": "bpe", "llama": "spm"}


def utc_iso(value: datetime) -> str:
    """RFC 3339 UTC time with ``Z``."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def model_view(record: ModelRecord, viewer: Principal) -> dict[str, Any]:
    """``Model`` as ``viewer`` may see it.

    ``kind``, ``format`` and ``qtype`` only once a file has been validated; ``owner_id``
    only for the owner and administrators (another user's public model does not say whose
    it is: user ids are not for strangers).
    """
    base = f"{API_BASE_PATH}/models/{record.id}"
    out: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "description": record.description,
        "status": record.status,
        "size_bytes": record.size_bytes,
        "sha256": record.sha256,
        "tags": list(record.tags or []),
        "public": bool(record.public),
        "owner_id": record.owner_id if viewer.is_admin or viewer.user_id == record.owner_id
        else None,
        "source_model_id": record.source_model_id,
        "created_at": utc_iso(record.created_at),
        "updated_at": utc_iso(record.updated_at),
        "links": {"self": base, "file": f"{base}/file", "metadata": f"{base}/metadata",
                  "validation": f"{base}/validation"},
    }
    if record.file_path and record.status in ("ready", "deleting"):
        out["kind"] = record.kind
        out["format"] = "gguf"
        if record.qtype:
            out["qtype"] = record.qtype
    return out


def metadata_view(record: ModelRecord) -> dict[str, Any]:
    """``ModelMetadata`` of a model with a file (``record.metadata`` must be set)."""
    meta = record.metadata
    arch = meta.get("model") or {}
    types = (meta.get("quantization") or {}).get("tensor_types") or {}
    parameters = int(meta.get("parameters") or 0)
    total_bytes = sum(int(t.get("bytes") or 0) for t in types.values())
    qtypes = [{"qtype": name.lower(), "tensors": int(t["tensors"]), "parameters": int(t["parameters"])}
              for name, t in sorted(types.items(), key=lambda kv: -kv[1]["parameters"])]
    return {
        "model_id": record.id,
        "kind": record.kind,
        "architecture": meta.get("architecture") or "unknown",
        "parameters": parameters,
        "qtypes": qtypes,
        "bits_per_weight": round(8 * total_bytes / parameters, 4) if parameters else 0.0,
        "context_length": arch.get("context_length"),
        "layers": arch.get("layers"),
        "heads": arch.get("heads"),
        "kv_heads": arch.get("kv_heads"),
        "embedding_length": arch.get("d_model"),
        "vocab_size": arch.get("vocab_size"),
        "input_shape": meta.get("input_shape"),
        "output_shape": meta.get("output_shape"),
        "tokenizer": None if record.kind == "dense" else _tokenizer(meta.get("tokenizer")),
        "memory": _memory(meta.get("memory") or {}, arch.get("context_length")),
    }


def _tokenizer(tok: dict[str, Any] | None) -> dict[str, Any] | None:
    if not tok or "error" in tok:
        return None
    return {
        "type": _TOKENIZER_TYPES.get(str(tok.get("model")), str(tok.get("model") or "unknown")),
        "bos_token_id": tok.get("bos_id"),
        "eos_token_id": tok.get("eos_id"),
        "chat_template": bool(tok.get("chat_template")),
    }


def _memory(mem: dict[str, Any], context_length: int | None) -> dict[str, int]:
    weights = int(mem.get("weights_bytes") or 0)
    kv = int(mem.get("kv_cache_bytes") or 0)
    return {
        "weights_bytes": weights,
        "kv_cache_bytes_per_token": kv // context_length if context_length else 0,
        "total_bytes": int(mem.get("total_bytes") or weights + kv),
    }


def validation_view(record: ModelRecord) -> dict[str, Any]:
    """``ValidationReport`` of the last file checked for the model (must exist)."""
    report = record.validation_report
    return {
        "model_id": record.id,
        "ok": bool(report.get("ok")),
        "checked_at": report.get("checked_at") or utc_iso(record.updated_at),
        "problems": [{"code": p["code"], "severity": p.get("severity", "error"),
                      "message": p["message"], "tensor": p.get("tensor")}
                     for p in report.get("problems", [])],
    }
