"""Models for inference tests: synthetic BitNet GGUF files registered in the live server's store.

Files are built once per test session (``build_model`` costs about half a second) and
copied into each server's models folder; the row is inserted after the file exists,
as the registry does.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from bitnet_sdk.config import Settings
from bitnet_sdk.testing.synthetic import LLAMA3_CHAT_TEMPLATE, build_model

__all__ = ["LLAMA3_CHAT_TEMPLATE", "ModelFiles", "register_model"]


class ModelFiles:
    """Synthetic model files built on first use, keyed by their build arguments."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._built: dict[tuple[tuple[str, Any], ...], Path] = {}

    def get(self, **kwargs: Any) -> Path:
        key = tuple(sorted(kwargs.items()))
        if key not in self._built:
            path = self.folder / f"model-{len(self._built)}.gguf"
            build_model(path, **kwargs)
            self._built[key] = path
        return self._built[key]


def register_model(settings: Settings, source: Path, *, owner_id: str | None, name: str,
                   public: bool = False, kind: str = "llm", status: str = "ready") -> str:
    """Copy ``source`` into the server's models folder and insert its row; returns the id."""
    from bitnet_sdk.store import ModelRecord

    settings.models_dir.mkdir(parents=True, exist_ok=True)
    target = settings.models_dir / f"{name}.gguf"
    shutil.copyfile(source, target)
    data = target.read_bytes()
    record = ModelRecord.create(
        owner=owner_id, name=name, public=public, kind=kind, qtype="tq2_0", status=status,
        file_path=str(target.relative_to(settings.data_dir)), size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(), metadata={},
    )
    return record.id
