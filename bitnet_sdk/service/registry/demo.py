"""The demo model a fresh server starts with, so the API can be tried at once.

A small synthetic BitNet b1.58 GGUF (random ternary weights, a tiny BPE
vocabulary): it generates nonsense, but every operation works on it. It is
built under a partial name in ``uploads_dir`` and registered through the model
registry like any other file (validated, renamed into ``models_dir``, then the
row), public and owned by the server (owner NULL).
"""

from __future__ import annotations

import logging
import secrets

from bitnet_sdk.config import Settings

__all__ = ["DEMO_MODEL_NAME", "ensure_demo_model"]

log = logging.getLogger(__name__)

DEMO_MODEL_NAME = "bitnet-demo-tiny"
DEMO_DESCRIPTION = "Synthetic BitNet b1.58 model with random ternary weights (for trying the API)."


def ensure_demo_model(settings: Settings) -> str | None:
    """Create the demo model (file and public row) when the store has no models.

    Returns the new model id, or None when models already exist. The store must
    be bound.
    """
    from bitnet_sdk.service.registry import models as registry
    from bitnet_sdk.service.registry.uploads import PARTIAL_SUFFIX
    from bitnet_sdk.store import ModelRecord
    from bitnet_sdk.testing.synthetic import build_model

    if ModelRecord.select().exists():
        return None
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    # A partial name: a crash before registration leaves a file the next start removes.
    path = settings.uploads_dir / f"demo-{secrets.token_hex(8)}{PARTIAL_SUFFIX}"
    try:
        build_model(path, n_layers=2, d_model=256, n_heads=4, n_kv_heads=2, d_ff=512,
                    qtype="tq2_0", seed=1234, context_length=512)
        record = registry.register_file(settings, path, owner_id=None, name=DEMO_MODEL_NAME,
                                        description=DEMO_DESCRIPTION, tags=["demo"], public=True)
    finally:
        path.unlink(missing_ok=True)  # gone already when registered (moved into models_dir)
    log.info("created demo model %s", record.id, extra={"model_id": record.id})
    return record.id
