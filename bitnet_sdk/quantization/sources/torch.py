"""PyTorch state-dict checkpoints (``pytorch_model.bin``, sharded ``*.bin`` with an index, ``.pt``).

Only available when ``torch`` is installed (the optional extra ``bitnet-sdk[torch]``); otherwise
opening one raises :class:`~bitnet_sdk.quantization.errors.MissingDependencyError` saying how to enable
it. Files are loaded with ``weights_only=True`` (no code from the file runs) and memory-mapped
(``mmap=True``) when their format allows, so tensors are materialised one at a time. The store
offers the same methods as :class:`~bitnet_sdk.quantization.sources.safetensors_io.ShardedSafetensors`,
so the Hugging Face source reads either.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bitnet_sdk.quantization.errors import MissingDependencyError, UnsupportedSourceError
from bitnet_sdk.quantization.sources.safetensors_io import TensorMeta

__all__ = ["TORCH_SUFFIXES", "TorchStateDict", "import_torch"]

TORCH_SUFFIXES = (".bin", ".pt", ".pth")
_DTYPE_NAMES = {
    "torch.float64": "F64", "torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16",
    "torch.int64": "I64", "torch.int32": "I32", "torch.int16": "I16", "torch.int8": "I8",
    "torch.uint8": "U8", "torch.bool": "BOOL",
}


def import_torch() -> Any:
    """``import torch``, or the clear error explaining how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "torch", "reading PyTorch state-dict files") from exc
    return torch


def _load(torch: Any, path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UnsupportedSourceError(f"{path}: not a loadable PyTorch state dict ({exc})") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise UnsupportedSourceError(f"{path}: expected a state dict (tensor names to tensors)")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


class TorchStateDict:
    """Tensors of one or more PyTorch state-dict files, by name."""

    def __init__(self, files: list[Path]) -> None:
        self._torch = import_torch()
        self.files = files
        self._tensors: dict[str, Any] = {}
        for path in files:
            for name, tensor in _load(self._torch, path).items():
                if name in self._tensors:
                    raise UnsupportedSourceError(f"tensor {name!r} appears in two files")
                self._tensors[name] = tensor

    @classmethod
    def from_dir(cls, folder: Path) -> TorchStateDict | None:
        """The checkpoint's ``.bin`` shards (``pytorch_model.bin.index.json``) or state-dict files."""
        index = folder / "pytorch_model.bin.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            return cls(sorted({folder / str(f) for f in weight_map.values()}))
        files = sorted(p for p in folder.iterdir() if p.suffix in TORCH_SUFFIXES and p.is_file())
        return cls(files) if files else None

    @property
    def nbytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def meta(self, name: str) -> TensorMeta:
        t = self._tensors[name]
        dtype = _DTYPE_NAMES.get(str(t.dtype))
        if dtype is None:
            raise UnsupportedSourceError(f"tensor {name!r} has unsupported dtype {t.dtype}")
        return TensorMeta(name, dtype, tuple(int(d) for d in t.shape), int(t.numel() * t.element_size()))

    def raw(self, name: str) -> np.ndarray:
        t = self._tensors[name]
        if str(t.dtype) == "torch.bfloat16":
            return t.view(self._torch.int16).numpy().view(np.uint16)
        return t.numpy()

    def float32(self, name: str) -> np.ndarray:
        return self._tensors[name].to(self._torch.float32).numpy().copy()

    def close(self) -> None:
        self._tensors.clear()
