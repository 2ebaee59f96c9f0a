"""Models for inference tests: synthetic BitNet GGUF files registered in the live server's store.

Files are built once per test session (``build_model`` costs about half a second) and
copied into each server's models folder; the row is inserted after the file exists,
as the registry does.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gguf import GGUFValueType
from openapi_schema_validator import OAS30Validator

from bitnet_sdk.config import Settings
from bitnet_sdk.server.spec import load_spec
from bitnet_sdk.testing.synthetic import LLAMA3_CHAT_TEMPLATE, build_model, tiny_bpe_vocab

__all__ = [
    "LLAMA3_CHAT_TEMPLATE",
    "ModelFiles",
    "cache_stats",
    "inference_settings",
    "register_model",
    "schema_errors",
    "wait_until",
]


def inference_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of a test server: numpy backend (deterministic, no JIT), no demo model."""
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "demo_model": False,
                              "webhook_allow_private": True, "backend": "numpy"}
    return Settings(**{**values, **overrides})


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        time.sleep(0.02)


def cache_stats(live_server: Any) -> dict[str, int]:
    """The running server's model cache totals (running, queued, models, ...)."""
    return live_server.app.bitnet.model_cache.stats()


def schema_errors(name: str, instance: Any) -> list[str]:
    """Why ``instance`` does not match the spec's component schema ``name`` ([] when it does)."""
    root = {"$ref": f"#/components/schemas/{name}", "components": load_spec()["components"]}
    validator = OAS30Validator(root, format_checker=OAS30Validator.FORMAT_CHECKER)
    return [e.message for e in validator.iter_errors(instance)]


class ModelFiles:
    """Synthetic model files built on first use, keyed by their build arguments."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._built: dict[tuple[tuple[str, Any], ...], Path] = {}

    def get(self, **kwargs: Any) -> Path:
        key = tuple(sorted(kwargs.items()))
        if key not in self._built:
            path = self.folder / f"model-{len(self._built)}.gguf"
            build_model(path, **kwargs)
            self._built[key] = path
        return self._built[key]

    def endless(self, **kwargs: Any) -> Path:
        """A model without end-of-generation tokens: it always runs to ``max_tokens``.

        For tests that need a generation still running (queues, cancellation, timeouts)
        whatever the sampled tokens; its 8192-token context allows long runs. ``kwargs``
        go to ``build_model`` (a larger model generates more slowly).
        """
        key = (("endless", True), *sorted(kwargs.items()))
        if key not in self._built:
            path = self.folder / f"endless-{len(self._built)}.gguf"
            types = [1] * len(tiny_bpe_vocab().tokens)  # every token NORMAL: none ends
            build_model(path, context_length=8192, metadata_overrides={
                "tokenizer.ggml.eos_token_id": None,
                "tokenizer.ggml.eot_token_id": None,
                "tokenizer.ggml.token_type": (types, GGUFValueType.ARRAY),
            }, **kwargs)
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
