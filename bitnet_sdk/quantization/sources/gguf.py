"""GGUF language models as a source: float files to ternary, and ternary files to another type.

Accepted: any BitNet GGUF this SDK reads (llama.cpp ``bitnet``, bitnet.cpp ``bitnet-b1.58`` /
``bitnet-25``) whose projections are F32/F16/BF16 (quantized by the pipeline; exact when the
floats already hold ternary values, as ``convert_hf_to_gguf.py`` writes them) or TQ1_0/TQ2_0/I2_S
(repacked without loss). llama.cpp's optional ``<proj>.scale`` tensors are folded into the
projections' scales, and re-created by the writer only when a target format needs them.

Metadata is copied key by key with its GGUF value type (llama.cpp checks types when it reads
keys), except the architecture, file type and quantization version, which the writer sets.
Architecture-specific keys are renamed for the target architecture (``bitnet-b1.58.block_count``
→ ``bitnet.block_count``), and the FFN activation is written explicitly, because the two projects
default differently when it is absent (llama.cpp ``bitnet``: SiLU; bitnet.cpp: squared ReLU).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFValueType, GGUFWriter, Keys

from bitnet_sdk.formats.constants import ARCH_BITNET_DENSE, BITNET_ARCHITECTURES
from bitnet_sdk.model.config import HIDDEN_ACT_KEY, ConfigError, ModelConfig
from bitnet_sdk.model.gguf_file import GGUFFormatError, ModelFile, read_model
from bitnet_sdk.quantization.errors import UnsupportedSourceError
from bitnet_sdk.quantization.sources.base import LLMSource, LLMTensor
from bitnet_sdk.ternary import TernaryTensor

__all__ = ["GGUFSource", "open_gguf"]

logger = logging.getLogger(__name__)

#: Keys the writer owns; never copied from the source.
_OWN_KEYS = frozenset({
    Keys.General.ARCHITECTURE, Keys.General.FILE_TYPE, Keys.General.QUANTIZATION_VERSION,
    Keys.General.ALIGNMENT,
})


def open_gguf(path: str | Path) -> ModelFile:
    """Open a GGUF file strictly, turning format errors into ``UnsupportedSourceError``."""
    try:
        return read_model(path)
    except GGUFFormatError as exc:
        raise UnsupportedSourceError(f"{path}: {exc}") from exc


class GGUFSource(LLMSource):
    """A BitNet GGUF file (see the module docstring)."""

    kind = "gguf"

    def __init__(self, path: str | Path, mf: ModelFile | None = None) -> None:
        self.path = Path(path)
        self.mf = mf or open_gguf(self.path)
        arch = self.mf.arch
        if arch not in BITNET_ARCHITECTURES:
            hint = "; quantize the ONNX model again for another type" if arch == ARCH_BITNET_DENSE else ""
            raise UnsupportedSourceError(
                f"{self.path}: architecture {arch!r} is not a BitNet language model "
                f"({', '.join(BITNET_ARCHITECTURES)}){hint}"
            )
        try:
            cfg = ModelConfig.from_model_file(self.mf)
        except ConfigError as exc:
            raise UnsupportedSourceError(f"{self.path}: {exc}") from exc
        self.source_arch = arch
        self.hidden_act = cfg.hidden_act
        self.original_bytes = self.mf.file_size
        self.tensors = []
        for name, info in self.mf.tensors.items():
            if name.endswith(".scale") and name[: -len(".scale")] + ".weight" in self.mf.tensors:
                continue  # folded into its projection
            nbytes = info.n_bytes or 0
            scale = self._scale_name(name)
            if scale:
                nbytes += self.mf.tensors[scale].n_bytes or 0
            projection = self.mf.is_projection(name)
            exact = projection and (info.type_name == "I2_S" or scale is not None)
            self.tensors.append(LLMTensor(name, name, info.shape, info.type_name, nbytes, projection, exact))

    def _scale_name(self, name: str) -> str | None:
        if not name.endswith(".weight"):
            return None
        scale = name[: -len(".weight")] + ".scale"
        return scale if scale in self.mf.tensors else None

    def _typed_fields(self) -> dict[str, list[Any]]:
        # The value types are only on gguf-py's reader fields, which ModelFile keeps privately.
        fields = self.mf._reader.fields  # no public accessor yet
        return {name: list(field.types) for name, field in fields.items()}

    def write_metadata(self, gw: GGUFWriter) -> None:
        prefix = f"{self.source_arch}."
        for key, types in self._typed_fields().items():
            if key.startswith("GGUF.") or key in _OWN_KEYS or not types:
                continue
            value = self.mf.metadata[key]
            out_key = f"{gw.arch}.{key[len(prefix):]}" if key.startswith(prefix) else key
            if types[0] == GGUFValueType.ARRAY:
                if len(types) != 2:
                    logger.warning("skipping nested array metadata", extra={"key": key})
                    continue
                gw.add_key_value(out_key, value, GGUFValueType.ARRAY, sub_type=types[1])
            else:
                gw.add_key_value(out_key, value, types[0])
        act_key = HIDDEN_ACT_KEY.format(arch=gw.arch)
        if act_key not in gw.kv_data[0]:
            gw.add_string(act_key, self.hidden_act)

    def read(self, name: str) -> np.ndarray | TernaryTensor:
        info = self.mf.tensor_info(name)
        if self.mf.is_projection(name):
            if info.is_ternary_type:
                return self.mf.ternary(name)  # .scale folded in by the reader
            w = np.array(self.mf.float_tensor(name), dtype=np.float32)
            scale = self._scale_name(name)
            if scale:
                s = np.asarray(self.mf.float_tensor(scale), dtype=np.float32).reshape(-1)
                w *= s[:, None] if s.size == w.shape[0] else s[0]
            return w
        return np.array(self.mf.float_tensor(name), dtype=np.float32)

    def close(self) -> None:
        self.mf.close()
