"""The weights of a BitNet b1.58 model, as the forward pass uses them.

Names follow llama.cpp's ``bitnet`` architecture (GGUF tensor names from the
``gguf`` package). Float tensors (embeddings, norm weights) stay float32 views
of the memory-mapped file where the file stores F32. Ternary projections are
handed to a ``convert`` function exactly once at load — the backend's
``prepare_weights`` for the runtime, the identity for the float64 reference —
so they are repacked into the backend's layout without keeping a second copy.

Two fusions happen before ``convert``, because they save one activation
quantization and one kernel call each per layer and are exact: the query, key
and value projections read the same normalized input, and so do the FFN gate
and up projections, so their rows are concatenated (``wqkv``, ``w_gate_up``).
Per-token activation quantization of a shared input is the same for all three,
and ``TernaryTensor`` carries a scale per row, so the fused product equals the
separate ones bit for bit.

llama.cpp's optional one-element ``<name>.scale`` tensors (multiplied into a
projection's product) are folded into the row scales by the reader
(``ModelFile.tensor``), so a ``TernaryTensor`` here is complete.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import ml_dtypes
import numpy as np
from gguf import MODEL_TENSOR, TENSOR_NAMES

from bitnet_sdk.ternary import TernaryTensor

if TYPE_CHECKING:
    from bitnet_sdk.model.config import ModelConfig

__all__ = [
    "LayerWeights",
    "ModelWeights",
    "PreparedStore",
    "TensorSource",
    "fuse_rows",
    "global_tensor_name",
    "layer_tensor_name",
    "load_weights",
]

W = TypeVar("W")


class TensorSource(Protocol):
    """What ``load_weights`` needs from a model file (``gguf_file.ModelFile``)."""

    def tensor(self, name: str, *, cache: bool = True) -> Any:
        """``TernaryTensor`` for projections (row scales complete), float32 otherwise."""

    def __contains__(self, name: object) -> bool:
        """Whether the file holds a tensor of that name."""


class PreparedStore(Protocol):
    """Where prepared weights may already be (``weight_cache.WeightCache``)."""

    def get(self, name: str) -> Any | None:
        """The prepared weight ``name``, or ``None`` when it must be prepared."""

    def put(self, name: str, prepared: Any) -> None:
        """Offer a freshly prepared weight for storing."""


@dataclass(frozen=True)
class LayerWeights(Generic[W]):
    """One transformer block. Shapes are ``[rows (out), cols (in)]`` as in GGUF."""

    attn_norm: np.ndarray  # [d_model]
    wqkv: W  # [(n_heads + 2 * n_kv_heads) * head_dim, d_model]
    attn_sub_norm: np.ndarray  # [n_heads * head_dim]
    wo: W  # [d_model, n_heads * head_dim]
    ffn_norm: np.ndarray  # [d_model]
    w_gate_up: W  # [2 * d_ff, d_model]: gate rows first, then up
    ffn_sub_norm: np.ndarray  # [d_ff]
    w_down: W  # [d_model, d_ff]


@dataclass(frozen=True)
class ModelWeights(Generic[W]):
    """The whole model.

    ``token_embd`` stays in the file's float type (float16, bfloat16 as
    ``ml_dtypes.bfloat16``, or float32; a view of the map). ``output`` is the head as ``convert_head`` prepared it (the
    backend's ``prepare_head``), or the matrix itself (``token_embd`` when
    tied) when ``load_weights`` got no ``convert_head``.
    """

    token_embd: np.ndarray  # [vocab, d_model]
    layers: tuple[LayerWeights[W], ...]
    output_norm: np.ndarray  # [d_model]
    output: Any  # [vocab, d_model]


def layer_tensor_name(kind: MODEL_TENSOR, layer: int, suffix: str = "weight") -> str:
    """GGUF name of a per-block tensor, e.g. ``blk.3.attn_q.weight``."""
    return f"{TENSOR_NAMES[kind].format(bid=layer)}.{suffix}"


def global_tensor_name(kind: MODEL_TENSOR) -> str:
    """GGUF name of a model-wide tensor, e.g. ``token_embd.weight``."""
    return f"{TENSOR_NAMES[kind]}.weight"


def fuse_rows(parts: Sequence[TernaryTensor]) -> TernaryTensor:
    """Stack ternary matrices with the same column count into one (rows concatenated)."""
    cols = {p.shape[1] for p in parts}
    if len(cols) != 1:
        raise ValueError(f"cannot fuse ternary tensors with different widths {sorted(cols)}")
    return TernaryTensor(
        np.concatenate([p.q for p in parts], axis=0),
        np.concatenate([p.scale for p in parts]).astype(np.float32, copy=False),
    )


def _float(src: TensorSource, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = src.tensor(name, cache=False)
    if isinstance(arr, TernaryTensor):
        raise ValueError(f"tensor {name!r} must be a float tensor, found a ternary one")
    arr = np.asarray(arr)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.shape != shape:
        raise ValueError(f"tensor {name!r} has shape {arr.shape}, expected {shape}")
    return arr


#: Float types kept as stored (a view of the map), by GGUF type name.
_AS_STORED = {"F16": np.dtype(np.float16), "BF16": np.dtype(ml_dtypes.bfloat16)}


def _float_as_stored(src: TensorSource, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float tensor in its stored type when that is float16 or bfloat16 (``ml_dtypes``; a
    view of the map), else float32.

    Sources without raw access (test fakes) give float32 as ``_float`` does.
    """
    raw = getattr(src, "raw", None)
    info = getattr(src, "tensor_info", None)
    dtype = _AS_STORED.get(info(name).type_name) if raw is not None and info is not None else None
    if dtype is not None:
        arr = raw(name).view(dtype)  # type: ignore[misc]  # raw is not None here
        if arr.size == int(np.prod(shape)):
            return arr.reshape(shape)
    return _float(src, name, shape)


def _ternary(src: TensorSource, kind: MODEL_TENSOR, layer: int, shape: tuple[int, int]) -> TernaryTensor:
    name = layer_tensor_name(kind, layer)
    t = src.tensor(name, cache=False)  # converted once, here; the reader keeps no copy
    if not isinstance(t, TernaryTensor):
        raise ValueError(f"tensor {name!r} is not ternary; BitNet projections must be")
    if t.shape != shape:
        raise ValueError(f"tensor {name!r} has shape {t.shape}, expected {shape}")
    return t


def _prepared(store: PreparedStore | None, name: str, shape: tuple[int, int], make: Callable[[], Any]) -> Any:
    """``store``'s copy of ``name`` when it has one of the right shape, else ``make()`` (offered to it)."""
    if store is not None:
        found = store.get(name)
        if found is not None:
            if tuple(getattr(found, "shape", ())) != shape:
                raise ValueError(f"cached weight {name!r} has shape {found.shape}, expected {shape}")
            return found
    made = make()
    if store is not None:
        store.put(name, made)
    return made


def load_weights(
    src: TensorSource,
    cfg: ModelConfig,
    convert: Callable[[TernaryTensor], W],
    convert_head: Callable[[np.ndarray], Any] | None = None,
    *,
    store: PreparedStore | None = None,
) -> ModelWeights[W]:
    """Read every tensor of a ``bitnet`` model, converting ternary ones with ``convert``.

    Each ternary tensor is converted as soon as it is read, so peak memory is
    the converted model plus one layer of unpacked int8 weights. Raises
    ``ValueError`` naming the tensor when a shape or kind does not match the
    configuration (a truncated or foreign file), and ``KeyError`` when a
    required tensor is missing. ``convert_head`` prepares the output head
    (``Backend.prepare_head``); it receives the matrix in its stored type.
    With a ``store``, each prepared weight (fused ``blk.N.attn_qkv``,
    ``blk.N.attn_output``, ``blk.N.ffn_gate_up``, ``blk.N.ffn_down``, and
    ``output``) is taken from it when present, skipping the file's ternary
    tensors entirely, and offered to it otherwise.
    """
    d_model, d_ff = cfg.d_model, cfg.d_ff
    d_q, d_kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    shapes = {MODEL_TENSOR.ATTN_OUT: (d_model, d_q), MODEL_TENSOR.FFN_DOWN: (d_model, d_ff)}

    def one(kind: MODEL_TENSOR, layer: int) -> Callable[[], W]:
        return lambda: convert(_ternary(src, kind, layer, shapes[kind]))

    def qkv(layer: int) -> W:
        return convert(fuse_rows([
            _ternary(src, MODEL_TENSOR.ATTN_Q, layer, (d_q, d_model)),
            _ternary(src, MODEL_TENSOR.ATTN_K, layer, (d_kv, d_model)),
            _ternary(src, MODEL_TENSOR.ATTN_V, layer, (d_kv, d_model)),
        ]))

    def gate_up(layer: int) -> W:
        return convert(fuse_rows([
            _ternary(src, MODEL_TENSOR.FFN_GATE, layer, (d_ff, d_model)),
            _ternary(src, MODEL_TENSOR.FFN_UP, layer, (d_ff, d_model)),
        ]))

    layers = []
    for i in range(cfg.n_layers):
        blk = f"blk.{i}"
        layers.append(
            LayerWeights(
                attn_norm=_float(src, layer_tensor_name(MODEL_TENSOR.ATTN_NORM, i), (d_model,)),
                wqkv=_prepared(store, f"{blk}.attn_qkv", (d_q + 2 * d_kv, d_model), partial(qkv, i)),
                attn_sub_norm=_float(src, layer_tensor_name(MODEL_TENSOR.ATTN_SUB_NORM, i), (d_q,)),
                wo=_prepared(store, f"{blk}.attn_output", (d_model, d_q), one(MODEL_TENSOR.ATTN_OUT, i)),
                ffn_norm=_float(src, layer_tensor_name(MODEL_TENSOR.FFN_NORM, i), (d_model,)),
                w_gate_up=_prepared(store, f"{blk}.ffn_gate_up", (2 * d_ff, d_model), partial(gate_up, i)),
                ffn_sub_norm=_float(src, layer_tensor_name(MODEL_TENSOR.FFN_SUB_NORM, i), (d_ff,)),
                w_down=_prepared(store, f"{blk}.ffn_down", (d_model, d_ff), one(MODEL_TENSOR.FFN_DOWN, i)),
            )
        )  # fmt: skip
    shape = (cfg.vocab_size, d_model)
    token_embd = _float_as_stored(src, global_tensor_name(MODEL_TENSOR.TOKEN_EMBD), shape)
    output_name = global_tensor_name(MODEL_TENSOR.OUTPUT)
    output = _float_as_stored(src, output_name, shape) if output_name in src else token_embd
    if convert_head is not None:
        head_src, prepare = output, convert_head
        output = _prepared(store, "output", shape, lambda: prepare(head_src))
    return ModelWeights(
        token_embd=token_embd,
        layers=tuple(layers),
        output_norm=_float(src, global_tensor_name(MODEL_TENSOR.OUTPUT_NORM), (d_model,)),
        output=output,
    )
