"""The demo model a fresh server starts with, so the API can be tried at once.

A small synthetic BitNet b1.58 GGUF (random ternary weights, a tiny BPE
vocabulary): it generates nonsense, but every operation works on it. It is
written to a temporary name and renamed when complete, and its row is
inserted after the file exists (the row follows the file, never the reverse).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from bitnet_sdk.config import Settings

__all__ = ["DEMO_MODEL_NAME", "ensure_demo_model"]

log = logging.getLogger(__name__)

DEMO_MODEL_NAME = "bitnet-demo-tiny"
DEMO_FILE = "demo-bitnet-tiny-tq2_0.gguf"


def ensure_demo_model(settings: Settings) -> str | None:
    """Create the demo model (file and public row) when the store has no models.

    Returns the new model id, or None when models already exist.
    """
    from bitnet_sdk.store import ModelRecord

    if ModelRecord.select().exists():
        return None
    path = settings.models_dir / DEMO_FILE
    if not path.exists():
        _build(path, settings.uploads_dir)
    record = ModelRecord.create(
        owner=None,
        name=DEMO_MODEL_NAME,
        description="Synthetic BitNet b1.58 model with random ternary weights (for trying the API).",
        tags=["demo"],
        public=True,
        kind="llm",
        qtype="tq2_0",
        status="ready",
        file_path=str(path.relative_to(settings.data_dir)),
        size_bytes=path.stat().st_size,
        sha256=_sha256(path),
        metadata=_metadata(path),
        validation_report=_validation(path),
    )
    log.info("created demo model %s (%s)", record.id, path)
    return record.id


def _build(path: Path, tmp_dir: Path) -> None:
    from bitnet_sdk.testing.synthetic import build_model

    tmp_dir.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f".{path.name}.{os.getpid()}.partial"
    try:
        build_model(tmp, n_layers=2, d_model=256, n_heads=4, n_kv_heads=2, d_ff=512,
                    qtype="tq2_0", seed=1234, context_length=512)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _metadata(path: Path) -> dict:
    from bitnet_sdk.model.metadata import model_metadata

    return model_metadata(path)


def _validation(path: Path) -> dict:
    from bitnet_sdk.model.validate import validate

    return validate(path).to_dict()
