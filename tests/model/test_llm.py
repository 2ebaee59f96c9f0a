"""The forward pass against the float64 reference, on in-memory random models.

These tests build weights directly (no file), so they pin the block structure
(norm placement, GQA, RoPE, activation, tied head) and the KV-cache logic
independently of the GGUF reader.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bitnet_sdk.backends import get as get_backend
from bitnet_sdk.model.config import ModelConfig
from bitnet_sdk.model.kv_cache import ContextOverflowError, KVCache
from bitnet_sdk.model.llm import forward
from bitnet_sdk.model.reference import compare_logits, quantize_rows, reference_forward
from bitnet_sdk.model.weights import ModelWeights, load_weights
from bitnet_sdk.ternary import TernaryTensor, quantize_weights


class DictSource(dict):
    """Tensors by GGUF name, the way ``ModelFile.tensor`` hands them out."""

    def tensor(self, name: str, *, cache: bool = True) -> object:
        return self[name]


def tiny_config(**changes: object) -> ModelConfig:
    base = ModelConfig(
        arch="bitnet", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=96,
        vocab_size=61, context_length=64, rope_theta=10000.0, rope_neox=True, rope_dim=16,
        rms_eps=1e-5, hidden_act="silu", tie_embeddings=True,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def random_source(cfg: ModelConfig, seed: int = 0) -> DictSource:
    rng = np.random.default_rng(seed)
    src = DictSource()
    src["token_embd.weight"] = rng.standard_normal((cfg.vocab_size, cfg.d_model)).astype(np.float32)
    src["output_norm.weight"] = (1 + 0.1 * rng.standard_normal(cfg.d_model)).astype(np.float32)
    dq, dkv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    shapes = {
        "attn_q": (dq, cfg.d_model), "attn_k": (dkv, cfg.d_model), "attn_v": (dkv, cfg.d_model),
        "attn_output": (cfg.d_model, dq), "ffn_gate": (cfg.d_ff, cfg.d_model),
        "ffn_up": (cfg.d_ff, cfg.d_model), "ffn_down": (cfg.d_model, cfg.d_ff),
    }
    norms = {"attn_norm": cfg.d_model, "attn_sub_norm": dq, "ffn_norm": cfg.d_model, "ffn_sub_norm": cfg.d_ff}
    for i in range(cfg.n_layers):
        for name, shape in shapes.items():
            src[f"blk.{i}.{name}.weight"] = quantize_weights(rng.standard_normal(shape).astype(np.float32))
        for name, dim in norms.items():
            src[f"blk.{i}.{name}.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
    return src


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    return get_backend("numpy")


def run(cfg: ModelConfig, src: DictSource, backend, ids: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    weights = load_weights(src, cfg, backend.prepare_weights)
    cache = KVCache(cfg.n_layers, cfg.n_kv_heads, cfg.head_dim, cfg.context_length)
    return forward(weights, cfg, backend, ids, 0, cache)


IDS = np.array([3, 17, 42, 5, 60, 0, 9, 33, 12, 7])


def assert_close_to_reference(ours: np.ndarray, ref: np.ndarray) -> None:
    # Same quantization rule in float32 and float64: positions agree to 1e-4 of
    # the logit range unless a half-way rounding moved one activation by one
    # int8 step (see LogitsAgreement); such positions must still be close.
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    agreement = compare_logits(ours, ref)
    assert agreement.tight_fraction >= 0.8, agreement
    assert agreement.min_cosine >= 0.995, agreement
    assert agreement.median_abs <= 1e-4 * agreement.scale, agreement


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"hidden_act": "relu2"},
        {"n_kv_heads": 1},  # multi-query
        {"n_kv_heads": 4},  # plain multi-head
        {"rope_dim": 8},  # partial rotary
        {"rope_neox": False},
        {"n_layers": 1, "rope_theta": 500000.0},
    ],
    ids=["base", "relu2", "mqa", "mha", "partial-rope", "norm-rope", "theta"],
)
def test_forward_matches_float64_reference(changes: dict[str, object], backend) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(**changes)
    src = random_source(cfg, seed=len(changes))
    assert_close_to_reference(run(cfg, src, backend, IDS), reference_forward(src, cfg, IDS))


def test_activation_choice_matters(backend) -> None:  # type: ignore[no-untyped-def]
    """Guards the test above against a reference that ignores ``hidden_act``."""
    cfg = tiny_config()
    src = random_source(cfg)
    silu = run(cfg, src, backend, IDS)
    relu2 = run(tiny_config(hidden_act="relu2"), src, backend, IDS)
    assert np.abs(silu - relu2).max() > 0.1


def test_reference_without_quantization_is_close_but_not_equal(backend) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config()
    src = random_source(cfg)
    ours = run(cfg, src, backend, IDS)
    exact = reference_forward(src, cfg, IDS, activations="none")
    err = np.abs(ours - exact).max()
    assert 1e-4 < err < 0.1 * np.abs(exact).max()


def test_incremental_decoding_equals_one_batch(backend) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config()
    weights = load_weights(random_source(cfg), cfg, backend.prepare_weights)
    full = forward(weights, cfg, backend, IDS, 0, KVCache(2, 2, 16, 64))
    cache = KVCache(2, 2, 16, 64)
    parts = [forward(weights, cfg, backend, IDS[:4], 0, cache)]
    parts += [forward(weights, cfg, backend, IDS[i : i + 1], i, cache) for i in range(4, len(IDS))]
    np.testing.assert_allclose(np.concatenate(parts), full, rtol=0, atol=1e-4)
    assert cache.length == len(IDS)


def test_last_only_is_the_last_row(backend) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config()
    weights = load_weights(random_source(cfg), cfg, backend.prepare_weights)
    full = forward(weights, cfg, backend, IDS, 0, KVCache(2, 2, 16, 64))
    last = forward(weights, cfg, backend, IDS, 0, KVCache(2, 2, 16, 64), last_only=True)
    assert last.shape == (1, cfg.vocab_size)
    # the head is a BLAS GEMV here and a GEMM there: equal up to float32 summation order
    np.testing.assert_allclose(last[0], full[-1], rtol=1e-5, atol=1e-5)


def test_attention_is_causal(backend) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config()
    weights = load_weights(random_source(cfg), cfg, backend.prepare_weights)
    other = IDS.copy()
    other[6] = 1
    a = forward(weights, cfg, backend, IDS, 0, KVCache(2, 2, 16, 64))
    b = forward(weights, cfg, backend, other, 0, KVCache(2, 2, 16, 64))
    np.testing.assert_array_equal(a[:6], b[:6])
    assert np.abs(a[6:] - b[6:]).max() > 1e-3


def test_rewinding_the_cache_recomputes_from_there(backend) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config()
    weights = load_weights(random_source(cfg), cfg, backend.prepare_weights)
    cache = KVCache(2, 2, 16, 64)
    forward(weights, cfg, backend, np.array([1, 2, 3, 4, 5]), 0, cache)
    cache.truncate(3)
    again = forward(weights, cfg, backend, IDS[3:6], 3, cache)
    fresh = forward(weights, cfg, backend, np.r_[[1, 2, 3], IDS[3:6]], 0, KVCache(2, 2, 16, 64))
    np.testing.assert_allclose(again, fresh[3:], atol=1e-4)


def test_context_overflow_is_an_error_and_leaves_the_cache(backend) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config()
    weights = load_weights(random_source(cfg), cfg, backend.prepare_weights)
    cache = KVCache(2, 2, 16, 8)
    forward(weights, cfg, backend, IDS[:6], 0, cache)
    with pytest.raises(ContextOverflowError):
        forward(weights, cfg, backend, IDS[:3], 6, cache)
    assert cache.length == 6


def test_bad_token_ids_are_rejected(backend) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config()
    weights = load_weights(random_source(cfg), cfg, backend.prepare_weights)
    for bad in ([cfg.vocab_size], [-1], []):
        with pytest.raises(ValueError):
            forward(weights, cfg, backend, np.array(bad, dtype=np.int64), 0, KVCache(2, 2, 16, 64))


def test_fused_projections_keep_row_scales() -> None:
    cfg = tiny_config()
    src = random_source(cfg)
    src["blk.0.attn_k.weight"] = TernaryTensor(
        src["blk.0.attn_k.weight"].q, np.linspace(0.5, 2.0, 32, dtype=np.float32)
    )
    weights: ModelWeights[TernaryTensor] = load_weights(src, cfg, lambda t: t)
    wqkv = weights.layers[0].wqkv
    assert wqkv.shape == (64 + 32 + 32, 64)
    np.testing.assert_array_equal(wqkv.scale[64:96], src["blk.0.attn_k.weight"].scale)
    np.testing.assert_array_equal(wqkv.q[96:], src["blk.0.attn_v.weight"].q)
    assert weights.output is weights.token_embd  # tied head


def test_shape_mismatch_names_the_tensor() -> None:
    cfg = tiny_config()
    src = random_source(cfg)
    src["blk.1.ffn_down.weight"] = quantize_weights(np.ones((64, 32), dtype=np.float32))
    with pytest.raises(ValueError, match=r"blk\.1\.ffn_down\.weight"):
        load_weights(src, cfg, lambda t: t)
    src = random_source(cfg)
    src["blk.0.attn_q.weight"] = np.ones((64, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="not ternary"):
        load_weights(src, cfg, lambda t: t)


def test_block256_quantization_follows_q8k() -> None:
    x = np.zeros((1, 256))
    x[0, :3] = [-2.0, 1.0, 0.5]
    q = quantize_rows(x, "block256")
    # scale = max / -127 with max the signed value of largest |x| (-2): 1.0 → 63.5 → 64 (half to even)
    np.testing.assert_allclose(q[0, :3], np.array([-127.0, 64.0, 32.0]) * (2.0 / 127))
    assert not quantize_rows(np.zeros((1, 256)), "block256").any()
