"""Hugging Face BitNet b1.58 checkpoints → the tensors and metadata of llama.cpp's ``bitnet``.

A checkpoint is a folder with ``config.json``, weights (``*.safetensors``, sharded with
``model.safetensors.index.json``, or PyTorch ``*.bin`` when ``torch`` is installed) and
``tokenizer.json``. Accepted layouts, read from tensor names (as llama.cpp's ``BitnetModel``):

* ``BitNetForCausalLM`` (microsoft/bitnet-b1.58-2B-4T): ``model.layers.N.self_attn.{q,k,v,o}_proj``,
  ``self_attn.attn_sub_norm``, ``mlp.{gate,up,down}_proj``, ``mlp.ffn_sub_norm``,
  ``input_layernorm``, ``post_attention_layernorm``, ``model.norm``, ``model.embed_tokens``,
  optional ``lm_head``;
* ``BitnetForCausalLM`` / LLaMA-layout checkpoints (1bitLLM/bitnet_b1_58-*): the same LLaMA names
  with the sub-norms called ``self_attn.inner_attn_ln`` and ``mlp.ffn_layernorm``. A LLaMA model
  *without* sub-norms has no ``bitnet`` equivalent (llama.cpp runs such files as ``llama``), so it
  is refused with the missing tensors named.

Transforms, checked against llama.cpp's converter and ``transformers``' BitNet integration:

* no q/k permutation: ``bitnet`` uses NEOX rotary embeddings, which is Hugging Face's own
  ``rotate_half`` layout (only llama.cpp's ``llama`` architecture needs the permutation);
* float projections (master weights) are quantized with BitNet's absmean rule by the pipeline;
* packed checkpoints store four 2-bit codes per ``uint8`` (``value + 1``; row block ``i`` of the
  unpacked matrix is bits ``2i..2i+1`` of every byte) plus a ``weight_scale``: the real matrix is
  ``codes * weight_scale`` for ``quantization_config.linear_class == "autobitlinear"`` (the 2B-4T
  release) and ``codes / weight_scale`` for the older ``"bitlinear"`` (``transformers``' default);
  they are converted exactly, without requantization;
* ``hidden_act`` (``relu2`` for 2B-4T, ``silu`` for older models) is written as
  ``bitnet.hidden_activation``; the output head is tied to the embedding unless ``lm_head``
  exists and ``tie_word_embeddings`` is false.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import MODEL_TENSOR, GGUFWriter, RopeScalingType

from bitnet_sdk.model.config import HIDDEN_ACT_KEY
from bitnet_sdk.model.weights import global_tensor_name, layer_tensor_name
from bitnet_sdk.quantization.errors import UnsupportedSourceError
from bitnet_sdk.quantization.sources.base import LLMSource, LLMTensor, normalize_act
from bitnet_sdk.quantization.sources.hf_tokenizer import HFVocab, read_vocab, write_vocab
from bitnet_sdk.quantization.sources.safetensors_io import ShardedSafetensors
from bitnet_sdk.quantization.sources.torch import TORCH_SUFFIXES, TorchStateDict
from bitnet_sdk.ternary import TernaryTensor

__all__ = ["HFSource"]

_M = MODEL_TENSOR
_ARCHITECTURES = ("BitNetForCausalLM", "BitnetForCausalLM", "LlamaForCausalLM")
_LAYER = re.compile(r"^(?:model\.)?layers\.(\d+)\.(.+)$")
_LAYER_PARTS: dict[str, MODEL_TENSOR] = {
    "input_layernorm.weight": _M.ATTN_NORM,
    "self_attn.q_proj.weight": _M.ATTN_Q,
    "self_attn.k_proj.weight": _M.ATTN_K,
    "self_attn.v_proj.weight": _M.ATTN_V,
    "self_attn.o_proj.weight": _M.ATTN_OUT,
    "self_attn.attn_sub_norm.weight": _M.ATTN_SUB_NORM,
    "self_attn.inner_attn_ln.weight": _M.ATTN_SUB_NORM,
    "post_attention_layernorm.weight": _M.FFN_NORM,
    "mlp.gate_proj.weight": _M.FFN_GATE,
    "mlp.up_proj.weight": _M.FFN_UP,
    "mlp.down_proj.weight": _M.FFN_DOWN,
    "mlp.ffn_sub_norm.weight": _M.FFN_SUB_NORM,
    "mlp.ffn_layernorm.weight": _M.FFN_SUB_NORM,
}
_GLOBAL: dict[str, MODEL_TENSOR] = {
    "model.embed_tokens.weight": _M.TOKEN_EMBD,
    "model.norm.weight": _M.OUTPUT_NORM,
    "lm_head.weight": _M.OUTPUT,
}
_PROJECTIONS = (_M.ATTN_Q, _M.ATTN_K, _M.ATTN_V, _M.ATTN_OUT, _M.FFN_GATE, _M.FFN_UP, _M.FFN_DOWN)
_LAYER_ORDER = (
    _M.ATTN_NORM, _M.ATTN_Q, _M.ATTN_K, _M.ATTN_V, _M.ATTN_OUT, _M.ATTN_SUB_NORM,
    _M.FFN_NORM, _M.FFN_GATE, _M.FFN_UP, _M.FFN_DOWN, _M.FFN_SUB_NORM,
)
_IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
_PACK = 4  # ternary codes per byte in packed checkpoints


@dataclass(frozen=True)
class _HParams:
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    context_length: int
    rms_eps: float
    rope_theta: float
    hidden_act: str
    tie_embeddings: bool
    name: str

    @classmethod
    def from_config(cls, cfg: dict[str, Any], folder: Path) -> _HParams:
        try:
            n_layers, d_model = int(cfg["num_hidden_layers"]), int(cfg["hidden_size"])
            n_heads, d_ff = int(cfg["num_attention_heads"]), int(cfg["intermediate_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UnsupportedSourceError(f"{folder}/config.json lacks a required field ({exc})") from exc
        act = normalize_act(cfg.get("hidden_act", "silu"))
        if act is None:
            raise UnsupportedSourceError(f"hidden_act {cfg.get('hidden_act')!r} is not supported (relu2 or silu)")
        rope = cfg.get("rope_scaling")
        if rope and not (rope.get("type", rope.get("rope_type")) in ("linear", "default") and float(rope.get("factor", 1.0)) == 1.0):
            raise UnsupportedSourceError(f"rope_scaling {rope!r} is not supported by the bitnet architecture")
        if cfg.get("attention_bias") or cfg.get("mlp_bias"):
            raise UnsupportedSourceError("attention or MLP biases are not part of the bitnet architecture")
        return cls(
            n_layers=n_layers, d_model=d_model, n_heads=n_heads,
            n_kv_heads=int(cfg.get("num_key_value_heads") or n_heads),
            head_dim=int(cfg.get("head_dim") or d_model // n_heads), d_ff=d_ff,
            context_length=int(cfg.get("max_position_embeddings") or 2048),
            rms_eps=float(cfg.get("rms_norm_eps") or 1e-6),
            rope_theta=float(cfg.get("rope_theta") or 10000.0), hidden_act=act,
            tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
            name=str(cfg.get("_name_or_path") or folder.resolve().name),
        )


def _open_store(path: Path) -> tuple[Path, ShardedSafetensors | TorchStateDict]:
    folder = path if path.is_dir() else path.parent
    if path.is_file():
        if path.suffix == ".safetensors":
            return folder, ShardedSafetensors([path])
        if path.suffix in TORCH_SUFFIXES:
            return folder, TorchStateDict([path])
        raise UnsupportedSourceError(f"{path}: not a safetensors or PyTorch weights file")
    store: ShardedSafetensors | TorchStateDict | None = ShardedSafetensors.from_dir(folder)
    if store is None:
        store = TorchStateDict.from_dir(folder)
    if store is None:
        raise UnsupportedSourceError(f"{folder} holds no *.safetensors or PyTorch *.bin weights")
    return folder, store


class HFSource(LLMSource):
    """A Hugging Face BitNet checkpoint (see the module docstring)."""

    kind = "hf"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        folder, self._store = _open_store(self.path)
        try:
            self.config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            archs = self.config.get("architectures") or []
            if archs and not set(archs) & set(_ARCHITECTURES):
                raise UnsupportedSourceError(f"architecture {archs} is not a BitNet/LLaMA causal LM ({', '.join(_ARCHITECTURES)})")
            self.hp = _HParams.from_config(self.config, folder)
            self.hidden_act = self.hp.hidden_act
            qc = self.config.get("quantization_config") or {}
            self._divide_scale = qc.get("linear_class", "bitlinear") != "autobitlinear"
            self._names: dict[str, str] = {}  # GGUF name -> source name
            self._scales: dict[str, str] = {}  # GGUF name -> source weight_scale name
            self.tensors = self._plan()
            self.vocab: HFVocab = read_vocab(folder, self._n_vocab)
            self.original_bytes = self._store.nbytes_on_disk
        except BaseException:
            self._store.close()
            raise

    def _target(self, name: str) -> str | None:
        if name in _GLOBAL:
            return global_tensor_name(_GLOBAL[name])
        m = _LAYER.match(name)
        if m and m.group(2) in _LAYER_PARTS:
            return layer_tensor_name(_LAYER_PARTS[m.group(2)], int(m.group(1)))
        return None

    def _plan(self) -> list[LLMTensor]:
        unknown: list[str] = []
        for name in self._store:
            if _IGNORED.search(name):
                continue
            if name.endswith(".weight_scale"):
                target = self._target(name[: -len("_scale")])
                if target is None:
                    unknown.append(name)
                else:
                    self._scales[target] = name
                continue
            target = self._target(name)
            if target is None:
                unknown.append(name)
            elif target in self._names:
                raise UnsupportedSourceError(f"{name} and {self._names[target]} both map to {target}")
            else:
                self._names[target] = name
        if unknown:
            raise UnsupportedSourceError(f"tensors not part of a BitNet model: {sorted(unknown)[:10]}")
        out_name = global_tensor_name(_M.OUTPUT)
        if out_name in self._names and self.hp.tie_embeddings:
            del self._names[out_name]  # tied: the head is the embedding
        embd = self._names.get(global_tensor_name(_M.TOKEN_EMBD))
        if embd is None:
            raise UnsupportedSourceError("the checkpoint has no model.embed_tokens.weight")
        self._n_vocab = self._store.meta(embd).shape[0]
        return self._check_and_list()

    def _expected(self) -> dict[str, tuple[tuple[int, ...], bool]]:
        hp, v = self.hp, self._n_vocab
        q, kv = hp.n_heads * hp.head_dim, hp.n_kv_heads * hp.head_dim
        out: dict[str, tuple[tuple[int, ...], bool]] = {
            global_tensor_name(_M.TOKEN_EMBD): ((v, hp.d_model), False),
            global_tensor_name(_M.OUTPUT_NORM): ((hp.d_model,), False),
        }
        if global_tensor_name(_M.OUTPUT) in self._names:
            out[global_tensor_name(_M.OUTPUT)] = ((v, hp.d_model), False)
        shapes = {
            _M.ATTN_NORM: (hp.d_model,), _M.ATTN_Q: (q, hp.d_model), _M.ATTN_K: (kv, hp.d_model),
            _M.ATTN_V: (kv, hp.d_model), _M.ATTN_OUT: (hp.d_model, q), _M.ATTN_SUB_NORM: (q,),
            _M.FFN_NORM: (hp.d_model,), _M.FFN_GATE: (hp.d_ff, hp.d_model), _M.FFN_UP: (hp.d_ff, hp.d_model),
            _M.FFN_DOWN: (hp.d_model, hp.d_ff), _M.FFN_SUB_NORM: (hp.d_ff,),
        }
        for i in range(hp.n_layers):
            for kind in _LAYER_ORDER:
                out[layer_tensor_name(kind, i)] = (shapes[kind], kind in _PROJECTIONS)
        return out

    def _check_and_list(self) -> list[LLMTensor]:
        expected = self._expected()
        missing = [n for n in expected if n not in self._names]
        extra = [self._names[n] for n in self._names if n not in expected]
        problems = []
        if missing:
            hint = ""
            if any("sub_norm" in n for n in missing):
                hint = (" (a LLaMA checkpoint without attention/FFN sub-norms has no equivalent in "
                        "llama.cpp's bitnet architecture)")
            problems.append(f"missing tensors {missing[:8]}{hint}")
        if extra:
            problems.append(f"tensors beyond the configured model {extra[:8]}")
        tensors: list[LLMTensor] = []
        for target, (shape, projection) in expected.items():
            if target not in self._names:
                continue
            src = self._names[target]
            meta = self._store.meta(src)
            stored, src_type, nbytes = meta.shape, meta.dtype, meta.nbytes
            if projection and target in self._scales:
                if meta.dtype != "U8" or len(stored) != 2:
                    problems.append(f"{src} has a weight_scale but is {meta.dtype}, not packed uint8")
                    continue
                stored, src_type = (stored[0] * _PACK, stored[1]), "U8x4"
                nbytes += self._store.meta(self._scales[target]).nbytes
            elif meta.dtype not in ("F32", "F16", "BF16", "F64"):
                problems.append(f"{src} has dtype {meta.dtype}; expected floats (or packed uint8 with a weight_scale)")
                continue
            if tuple(stored) != shape:
                problems.append(f"{src} has shape {list(stored)}, expected {list(shape)} from config.json")
                continue
            tensors.append(LLMTensor(target, src, shape, src_type, nbytes, projection, src_type == "U8x4"))
        if problems:
            raise UnsupportedSourceError("; ".join(problems))
        return tensors

    def write_metadata(self, gw: GGUFWriter) -> None:
        hp = self.hp
        gw.add_name(hp.name)
        gw.add_vocab_size(self._n_vocab)
        gw.add_context_length(hp.context_length)
        gw.add_embedding_length(hp.d_model)
        gw.add_block_count(hp.n_layers)
        gw.add_feed_forward_length(hp.d_ff)
        gw.add_head_count(hp.n_heads)
        gw.add_head_count_kv(hp.n_kv_heads)
        if hp.head_dim != hp.d_model // hp.n_heads:
            gw.add_key_length(hp.head_dim)
            gw.add_value_length(hp.head_dim)
        gw.add_layer_norm_rms_eps(hp.rms_eps)
        gw.add_rope_freq_base(hp.rope_theta)
        gw.add_rope_dimension_count(hp.head_dim)
        gw.add_rope_scaling_type(RopeScalingType.LINEAR)  # as llama.cpp's BitnetModel writes
        gw.add_rope_scaling_factor(1.0)
        gw.add_string(HIDDEN_ACT_KEY.format(arch=gw.arch), hp.hidden_act)
        write_vocab(gw, self.vocab)

    def read_bf16(self, name: str) -> np.ndarray | None:
        src = self._names[name]
        if name in self._scales or not isinstance(self._store, ShardedSafetensors):
            return None
        return self._store.raw(src) if self._store.meta(src).dtype == "BF16" else None

    def read(self, name: str) -> np.ndarray | TernaryTensor:
        src = self._names[name]
        scale_name = self._scales.get(name)
        if scale_name is None:
            return self._store.float32(src)
        packed = np.asarray(self._store.raw(src), dtype=np.uint8)
        codes = np.concatenate([(packed >> (2 * i)) & 3 for i in range(_PACK)], axis=0)
        if (codes == 3).any():
            raise UnsupportedSourceError(f"{src}: packed weights hold the invalid 2-bit code 3")
        scale = float(np.asarray(self._store.float32(scale_name)).reshape(-1)[0])
        if self._divide_scale:
            scale = 1.0 / scale
        q = codes.view(np.int8) - np.int8(1)
        return TernaryTensor.from_scalar(q, scale)

    def close(self) -> None:
        self._store.close()
