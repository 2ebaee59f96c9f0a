"""Shared, module-independent sources for the quantization tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.quantization._support import build_hf_checkpoint


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A tiny BitNetForCausalLM checkpoint (2 layers, d_model 256, relu2) and its weights."""
    folder = tmp_path_factory.mktemp("hf") / "bitnet-tiny"
    return folder, build_hf_checkpoint(folder, seed=1)


@pytest.fixture(scope="session")
def hf_sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights as ``hf_checkpoint``, in three shards with an index."""
    folder = tmp_path_factory.mktemp("hf") / "bitnet-tiny-sharded"
    build_hf_checkpoint(folder, seed=1, shards=3)
    return folder
