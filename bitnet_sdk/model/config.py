"""Hyper-parameters of a BitNet b1.58 model, read from GGUF metadata.

Keys follow llama.cpp (``gguf.Keys``); where a key is optional the default is
the one llama.cpp / bitnet.cpp use for the same architecture, so a file runs
here as it runs there:

* RoPE: llama.cpp's ``llama_model_rope_type`` puts ``LLM_ARCH_BITNET`` (and
  bitnet.cpp its ``bitnet-b1.58`` / ``bitnet-25``) in the NEOX group: pairs
  ``(x[i], x[i + d/2])`` rotate together. ``rope.freq_base`` defaults to 10000.
* FFN activation: llama.cpp reads ``<arch>.hidden_activation`` for ``bitnet``
  and falls back to SiLU when it is absent (older files; the 2B-4T checkpoint
  itself declares ``relu2``). bitnet.cpp's ``build_bitnet_158`` always uses
  squared ReLU. We honour the key when present (``relu2``/``silu`` and their
  aliases) and use those per-architecture defaults otherwise.
* The output head is tied to ``token_embd`` unless the file has ``output.weight``.

Sizes and counts come from whoever wrote the file, so before anything is sized
by them they are checked against the file itself when its tensor directory is
given (``ModelFile.config`` and ``validate`` give it): a model of ``n_layers``
blocks needs 11 tensors per block, and no width (``embedding_length``,
``feed_forward_length``, heads times head size, the vocabulary) can exceed the
number of weights its tensors declare (a modest mismatch is left to the
tensor-by-tensor shape checks, which say more). A context length beyond
:data:`MAX_CONTEXT_LENGTH` positions is refused outright.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from gguf import Keys

from bitnet_sdk.model.gguf_file import (
    ARCH_BITNET,
    SUPPORTED_ARCHS,
    Problem,
    StringArray,
    metadata_array,
)

if TYPE_CHECKING:
    from bitnet_sdk.model.gguf_file import ModelFile

__all__ = ["HIDDEN_ACT_KEY", "MAX_CONTEXT_LENGTH", "TENSORS_PER_LAYER", "ConfigError", "ModelConfig",
           "config_problems"]

#: llama.cpp's ``LLM_KV_HIDDEN_ACT``; gguf-py has no constant for it yet.
HIDDEN_ACT_KEY = "{arch}.hidden_activation"

_ACT_ALIASES = {
    "silu": "silu", "swish": "silu", "swiglu": "silu",
    "relu2": "relu2", "relu_sqr": "relu2", "relu_squared": "relu2", "squared_relu": "relu2",
}
_DEFAULT_ACT = {ARCH_BITNET: "silu"}  # bitnet.cpp's architectures: relu2
DEFAULT_ROPE_THETA = 10000.0
#: Tensors every block needs: 4 norms and 7 projections.
TENSORS_PER_LAYER = 11
#: Largest context window accepted (16 Mi positions; the largest published models use 1 Mi).
MAX_CONTEXT_LENGTH = 1 << 24


class _Shaped(Protocol):
    @property
    def shape(self) -> tuple[int, ...]: ...


#: A file's tensor directory (name → entry with a ``shape``), or just the names.
Tensors = Mapping[str, _Shaped] | Collection[str]


class ConfigError(ValueError):
    """The metadata does not describe a model we can run; ``problems`` lists why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class ModelConfig:
    """What the runtime needs to build a BitNet b1.58 decoder.

    ``d_model`` is ``embedding_length``; attention uses ``n_heads`` query heads
    of ``head_dim`` and ``n_kv_heads`` key/value heads (grouped-query attention);
    the gated FFN has ``d_ff`` hidden units and ``hidden_act`` (``relu2`` or
    ``silu``) on the gate.
    """

    arch: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    vocab_size: int
    context_length: int
    rope_theta: float
    rope_neox: bool
    rope_dim: int
    rms_eps: float
    hidden_act: str
    tie_embeddings: bool
    bos_id: int | None = None
    eos_id: int | None = None

    @property
    def rope_style(self) -> str:
        """``"neox"`` (rotate halves) or ``"normal"`` (rotate consecutive pairs)."""
        return "neox" if self.rope_neox else "normal"

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def kv_cache_bytes(self, n_ctx: int | None = None, bytes_per_value: int = 4) -> int:
        """KV cache size: ``2 (K and V) * n_layers * n_ctx * n_kv_heads * head_dim * bytes``."""
        n_ctx = self.context_length if n_ctx is None else n_ctx
        return 2 * self.n_layers * n_ctx * self.kv_dim * bytes_per_value

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rope_style": self.rope_style}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], tensor_names: Tensors | None = None) -> ModelConfig:
        """Build from raw GGUF key/values; ``tensor_names`` decides tied embeddings, and
        when it is a tensor directory (name → entry with ``shape``) bounds every size.

        Raises :class:`ConfigError` listing every missing, mistyped or
        inconsistent value.
        """
        fields, problems = _collect(metadata, tensor_names)
        if problems:
            raise ConfigError(problems)
        return cls(**fields)

    @classmethod
    def from_model_file(cls, mf: ModelFile) -> ModelConfig:
        return cls.from_metadata(mf.metadata, mf.tensors)


def config_problems(metadata: Mapping[str, Any], tensor_names: Tensors | None = None) -> list[Problem]:
    """Every problem :meth:`ModelConfig.from_metadata` would raise for, as a list."""
    return _collect(metadata, tensor_names)[1]


class _Reader:
    """Typed access to metadata that records problems instead of raising."""

    def __init__(self, metadata: Mapping[str, Any], arch: str) -> None:
        self.metadata = metadata
        self.arch = arch
        self.problems: list[Problem] = []

    def key(self, template: str) -> str:
        return template.format(arch=self.arch)

    def get_int(self, template: str, default: int | None = None, *, minimum: int = 1) -> int | None:
        key = self.key(template)
        value = self.metadata.get(key)
        if value is None:
            if default is None:
                self.problems.append(Problem("missing_key", f"required key {key} is missing"))
            return default
        if isinstance(value, list):  # per-layer arrays: we support uniform ones
            if value and all(v == value[0] for v in value):
                value = value[0]
            else:
                self.problems.append(Problem("bad_key_type", f"{key} varies per layer ({value[:4]}...), unsupported"))
                return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.append(Problem("bad_key_type", f"{key} must be an integer, got {value!r}"))
            return default
        if value < minimum:
            self.problems.append(Problem("bad_hparams", f"{key} = {value} must be at least {minimum}"))
            return default
        return value

    def get_float(self, template: str, default: float | None = None) -> float | None:
        key = self.key(template)
        value = self.metadata.get(key)
        if value is None:
            if default is None:
                self.problems.append(Problem("missing_key", f"required key {key} is missing"))
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            self.problems.append(Problem("bad_key_type", f"{key} must be a positive number, got {value!r}"))
            return default
        return float(value)


def _token_count(metadata: Mapping[str, Any]) -> int | None:
    tokens = metadata_array(metadata, Keys.Tokenizer.LIST)
    return len(tokens) if isinstance(tokens, (list, StringArray, np.ndarray)) else None


def _optional_id(metadata: Mapping[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _collect(metadata: Mapping[str, Any], tensor_names: Tensors | None) -> tuple[dict[str, Any], list[Problem]]:
    arch = metadata.get(Keys.General.ARCHITECTURE)
    if not isinstance(arch, str) or not arch:
        return {}, [Problem("missing_key", f"required key {Keys.General.ARCHITECTURE} is missing")]
    if arch not in SUPPORTED_ARCHS:
        return {}, [Problem("unknown_architecture", f"architecture {arch!r} is not BitNet ({', '.join(SUPPORTED_ARCHS)})")]
    r = _Reader(metadata, arch)
    n_layers = r.get_int(Keys.LLM.BLOCK_COUNT)
    d_model = r.get_int(Keys.LLM.EMBEDDING_LENGTH)
    n_heads = r.get_int(Keys.Attention.HEAD_COUNT)
    n_kv_heads = r.get_int(Keys.Attention.HEAD_COUNT_KV, n_heads or 1)
    d_ff = r.get_int(Keys.LLM.FEED_FORWARD_LENGTH)
    context_length = r.get_int(Keys.LLM.CONTEXT_LENGTH)
    rms_eps = r.get_float(Keys.Attention.LAYERNORM_RMS_EPS)
    rope_theta = r.get_float(Keys.Rope.FREQ_BASE, DEFAULT_ROPE_THETA)
    head_dim = r.get_int(Keys.Attention.KEY_LENGTH, (d_model // n_heads) if d_model and n_heads else 1)
    value_dim = r.get_int(Keys.Attention.VALUE_LENGTH, head_dim or 1)
    rope_dim = r.get_int(Keys.Rope.DIMENSION_COUNT, head_dim or 1)
    vocab_size = _token_count(metadata) or r.get_int(Keys.LLM.VOCAB_SIZE)

    act_key = HIDDEN_ACT_KEY.format(arch=arch)
    raw_act = metadata.get(act_key, _DEFAULT_ACT.get(arch, "relu2"))
    hidden_act = _ACT_ALIASES.get(raw_act) if isinstance(raw_act, str) else None
    if hidden_act is None:
        r.problems.append(Problem("bad_hparams", f"{act_key} = {raw_act!r} is not supported (relu2 or silu)"))

    if d_model and n_heads and not metadata.get(r.key(Keys.Attention.KEY_LENGTH)) and d_model % n_heads:
        r.problems.append(Problem("bad_hparams", f"{n_heads} heads do not divide the width {d_model}"))
    if n_heads and n_kv_heads and n_heads % n_kv_heads:
        r.problems.append(Problem("bad_hparams", f"{n_heads} query heads are not a multiple of {n_kv_heads} key/value heads"))
    if head_dim and value_dim and head_dim != value_dim:
        r.problems.append(Problem("bad_hparams", f"key length {head_dim} differs from value length {value_dim}"))
    if head_dim and rope_dim and (rope_dim > head_dim or rope_dim % 2):
        r.problems.append(Problem("bad_hparams", f"RoPE dimension {rope_dim} must be even and at most the head size {head_dim}"))
    if r.problems:
        return {}, r.problems
    widths = {
        r.key(Keys.LLM.EMBEDDING_LENGTH): d_model, r.key(Keys.LLM.FEED_FORWARD_LENGTH): d_ff,
        "query heads x head size": n_heads * head_dim,  # type: ignore[operator]
        "key/value heads x head size": n_kv_heads * head_dim,  # type: ignore[operator]
        "the vocabulary": vocab_size,
    }
    problems = _bound_problems(r.key(Keys.LLM.BLOCK_COUNT), n_layers, r.key(Keys.LLM.CONTEXT_LENGTH),
                               context_length, widths, tensor_names)
    if problems:
        return {}, problems
    fields = {
        "arch": arch,
        "n_layers": n_layers,
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "head_dim": head_dim,
        "d_ff": d_ff,
        "vocab_size": vocab_size,
        "context_length": context_length,
        "rope_theta": rope_theta,
        "rope_neox": True,  # every BitNet architecture (see module docstring)
        "rope_dim": rope_dim,
        "rms_eps": rms_eps,
        "hidden_act": hidden_act,
        "tie_embeddings": tensor_names is None or "output.weight" not in tensor_names,
        "bos_id": _optional_id(metadata, Keys.Tokenizer.BOS_ID),
        "eos_id": _optional_id(metadata, Keys.Tokenizer.EOS_ID),
    }
    return fields, []


def _bound_problems(layers_key: str, n_layers: Any, context_key: str, context_length: Any,
                    widths: Mapping[str, Any], tensors: Tensors | None) -> list[Problem]:
    """Sizes the file cannot back: more blocks than its tensors make, wider than its tensors."""
    problems = []
    if context_length > MAX_CONTEXT_LENGTH:
        problems.append(Problem("bad_hparams", f"{context_key} = {context_length} is more than "
                                               f"{MAX_CONTEXT_LENGTH} positions"))
    if tensors is None:
        return problems
    if n_layers * TENSORS_PER_LAYER > len(tensors):
        problems.append(Problem("bad_hparams", f"{layers_key} = {n_layers}, but the file declares "
                                               f"{len(tensors)} tensors ({TENSORS_PER_LAYER} per block)"))
    if isinstance(tensors, Mapping):
        weights = sum(math.prod(getattr(t, "shape", ())) for t in tensors.values())
        for what, value in widths.items():
            if value > weights:
                problems.append(Problem("bad_hparams", f"{what} = {value} is more than all the weights "
                                                       f"the file declares ({weights})"))
    return problems
