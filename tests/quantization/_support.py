"""Small quantization sources built from scratch: HF checkpoints, ONNX MLPs, GGUF files."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from bitnet_sdk.quantization.sources.hf_tokenizer import LLAMA3_HF_REGEX

CORPUS = [
    "BitNet b1.58 stores every weight as -1, 0 or +1 with one scale per matrix.",
    "The quick brown fox jumps over the lazy dog, and the dog sleeps in the sun.",
    "Numbers like 12, 345 and 6789 are split in groups of three digits.",
    "Hello world! How are you today? I'm fine, thanks; we'll see you tomorrow.",
] * 4
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]


def build_tokenizer(folder: Path, vocab_size: int = 320) -> Tokenizer:
    """A LLaMA-3 style byte-level BPE ``tokenizer.json`` (+ ``tokenizer_config.json``)."""
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_HF_REGEX), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    bos = tok.token_to_id(SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A $B:1", special_tokens=[(SPECIALS[0], bos)],
    )
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": SPECIALS[0], "eos_token": SPECIALS[1], "add_bos_token": True,
    }))
    return tok


def hf_config(**overrides: object) -> dict:
    cfg = {
        "architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
        "num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 512, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "hidden_act": "relu2", "tie_word_embeddings": True, "vocab_size": 320,
    }
    cfg.update(overrides)
    return cfg


def hf_tensors(cfg: dict, seed: int = 0, *, llama_names: bool = False) -> dict[str, np.ndarray]:
    """Random float32 weights with the checkpoint's names (BitNetForCausalLM or 1bitLLM's)."""
    rng = np.random.default_rng(seed)
    d, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32) * 0.05  # noqa: E731
    norm = lambda n: (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731
    out = {"model.embed_tokens.weight": f(v, d), "model.norm.weight": norm(d)}
    attn_sub = "self_attn.inner_attn_ln" if llama_names else "self_attn.attn_sub_norm"
    ffn_sub = "mlp.ffn_layernorm" if llama_names else "mlp.ffn_sub_norm"
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out.update({
            p + "input_layernorm.weight": norm(d), p + "post_attention_layernorm.weight": norm(d),
            p + "self_attn.q_proj.weight": f(d, d), p + "self_attn.k_proj.weight": f(kv, d),
            p + "self_attn.v_proj.weight": f(kv, d), p + "self_attn.o_proj.weight": f(d, d),
            p + f"{attn_sub}.weight": norm(d), p + "mlp.gate_proj.weight": f(ff, d),
            p + "mlp.up_proj.weight": f(ff, d), p + "mlp.down_proj.weight": f(d, ff),
            p + f"{ffn_sub}.weight": norm(ff),
        })
    return out


def build_hf_checkpoint(
    folder: Path, *, shards: int = 1, seed: int = 0, llama_names: bool = False,
    tensors: dict[str, np.ndarray] | None = None, **config: object,
) -> dict[str, np.ndarray]:
    """Write config, tokenizer and weights (``shards`` > 1: sharded with an index)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = hf_config(**config)
    (folder / "config.json").write_text(json.dumps(cfg))
    build_tokenizer(folder)
    weights = tensors if tensors is not None else hf_tensors(cfg, seed, llama_names=llama_names)
    names = list(weights)
    if shards == 1:
        save_file(weights, str(folder / "model.safetensors"))
    else:
        weight_map = {}
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: weights[n] for n in names[s::shards]}
            save_file(part, str(folder / fname))
            weight_map.update(dict.fromkeys(part, fname))
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return weights


def pack_hf(w: np.ndarray) -> tuple[np.ndarray, float]:
    """Absmean-quantize ``w`` and pack it as ``transformers`` does (4 codes per uint8, row blocks)."""
    s = float(np.mean(np.abs(w)))
    q = np.clip(np.round(w / s), -1, 1).astype(np.int8)
    rows = q.shape[0] // 4
    codes = (q + 1).astype(np.uint8)
    packed = np.zeros((rows, q.shape[1]), dtype=np.uint8)
    for i in range(4):
        packed |= codes[i * rows : (i + 1) * rows] << (2 * i)
    return packed, s


def build_onnx_mlp(
    path: Path, sizes: tuple[int, ...] = (20, 48, 24, 5), *, seed: int = 0, opset: int = 20,
    activation: str = "Relu", use_gemm: bool = True, softmax: bool = True, flatten: bool = False,
) -> onnx.ModelProto:
    """An MLP classifier: [Flatten] → (Gemm | MatMul+Add) → activation ... → Softmax."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    x = "input"
    in_shape = ["N", sizes[0]] if not flatten else ["N", 4, sizes[0] // 4]
    if flatten:
        nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1))
        x = "flat"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(b)).astype(np.float32)
        out = f"h{i}"
        if use_gemm:
            inits += [numpy_helper.from_array(w.T.copy(), f"fc{i}.weight"), numpy_helper.from_array(bias, f"fc{i}.bias")]
            nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"fc{i}", transB=1))
        else:
            inits += [numpy_helper.from_array(w, f"fc{i}.weight"), numpy_helper.from_array(bias, f"fc{i}.bias")]
            nodes.append(helper.make_node("MatMul", [x, f"fc{i}.weight"], [out + "_mm"], name=f"fc{i}_matmul"))
            nodes.append(helper.make_node("Add", [out + "_mm", f"fc{i}.bias"], [out], name=f"fc{i}_add"))
        x = out
        if i < len(sizes) - 2:
            nodes.append(helper.make_node(activation, [x], [f"a{i}"], name=f"act{i}"))
            x = f"a{i}"
    final = "probs" if softmax else x
    if softmax:
        nodes.append(helper.make_node("Softmax", [x], ["probs"], name="softmax", axis=-1))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(final, TensorProto.FLOAT, ["N", sizes[-1]])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model
