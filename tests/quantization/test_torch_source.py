"""PyTorch state-dict checkpoints: a clear error without torch, the same model with it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.quantization.errors import MissingDependencyError
from bitnet_sdk.quantization.pipeline import detect_source, quantize
from tests.quantization._support import build_hf_checkpoint

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _bin_checkpoint(folder: Path) -> dict[str, np.ndarray]:
    weights = build_hf_checkpoint(folder, seed=4)
    (folder / "model.safetensors").unlink()
    return weights


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed; the missing-dependency path cannot happen")
def test_without_torch_the_error_says_how_to_enable_it(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    _bin_checkpoint(folder)
    (folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really")
    assert detect_source(folder / "pytorch_model.bin") == "torch"
    with pytest.raises(MissingDependencyError, match=r"pip install 'bitnet-sdk\[torch\]'"):
        quantize(folder, tmp_path / "o.gguf")
    with pytest.raises(MissingDependencyError):
        quantize(folder / "pytorch_model.bin", tmp_path / "o.gguf")
    assert not (tmp_path / "o.gguf").exists()


@pytest.mark.skipif(not HAS_TORCH, reason="needs the optional torch extra (pip install 'bitnet-sdk[torch]')")
def test_state_dict_quantizes_like_safetensors(tmp_path: Path) -> None:
    import torch

    weights = build_hf_checkpoint(tmp_path / "st", seed=4)
    folder = tmp_path / "pt"
    _bin_checkpoint(folder)
    torch.save({k: torch.from_numpy(v).to(torch.bfloat16 if v.ndim == 2 else torch.float32) for k, v in weights.items()},
               folder / "pytorch_model.bin")
    quantize(folder, tmp_path / "pt.gguf", "tq2_0", backend="numpy")
    mf = read_model(tmp_path / "pt.gguf")
    w = torch.from_numpy(weights["model.layers.0.mlp.up_proj.weight"]).to(torch.bfloat16).float().numpy()
    s = np.mean(np.abs(w), dtype=np.float64)
    np.testing.assert_array_equal(mf.tensor("blk.0.ffn_up.weight").q, np.clip(np.round(w / np.float32(s)), -1, 1))
