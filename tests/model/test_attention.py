"""Grouped-query attention reads each K/V head once; an F16 KV cache stays close to F32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitnet_sdk.backends import ops
from bitnet_sdk.model.kv_cache import KVCache
from bitnet_sdk.model.loader import load
from bitnet_sdk.testing.parity import build_conditioned_model


def repeated_heads_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The textbook form in float64: every query head gets its own copy of its K/V head."""
    _, h, d = q.shape
    t, hkv, _ = k.shape
    kk = np.repeat(k.astype(np.float64), h // hkv, axis=1)
    vv = np.repeat(v.astype(np.float64), h // hkv, axis=1)
    scores = np.einsum("nhd,thd->hnt", q.astype(np.float64), kk) / np.sqrt(d)
    scores = np.where(np.arange(t)[None, None, :] > pos[None, :, None], -np.inf, scores)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("hnt,thd->nhd", probs, vv)


@pytest.mark.parametrize(("n", "t", "h", "hkv"), [(1, 1, 4, 4), (1, 37, 20, 5), (6, 6, 8, 2), (5, 40, 6, 1), (3, 9, 4, 2)])
@pytest.mark.parametrize("kv_dtype", [np.float32, np.float16])
def test_grouped_query_attention(n: int, t: int, h: int, hkv: int, kv_dtype: type) -> None:
    rng = np.random.default_rng(n * 100 + t)
    d = 16
    q = rng.standard_normal((n, h, d)).astype(np.float32)
    k = rng.standard_normal((t, hkv, d)).astype(kv_dtype)
    v = rng.standard_normal((t, hkv, d)).astype(kv_dtype)
    pos = np.arange(t - n, t)
    got = ops.attention(q, k, v, pos)
    assert got.dtype == np.float32 and got.shape == (n, h, d)
    np.testing.assert_allclose(got, repeated_heads_attention(q, k, v, pos), rtol=1e-5, atol=1e-5)


def test_queries_in_the_middle_of_the_cache_are_masked() -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 4, 8)).astype(np.float32)
    k = rng.standard_normal((10, 2, 8)).astype(np.float32)
    pos = np.array([3, 4])  # later cache rows must not be seen
    got = ops.attention(q, k, k, pos)
    np.testing.assert_allclose(got, repeated_heads_attention(q, k[:5], k[:5], pos), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_conditioned_model(tmp_path_factory.mktemp("att") / "m.gguf", qtype="tq2_0", n_layers=2,
                                   d_model=256, n_heads=4, n_kv_heads=2, d_ff=512, seed=7)  # fmt: skip


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_float16_kv_cache_is_close_to_float32(model_path: Path, backend: str) -> None:
    model = load(model_path, backend=backend)
    ids = np.random.default_rng(2).integers(0, 512, 40)
    f32 = model.forward(ids)
    cache = model.new_cache(64, dtype=np.float16)
    assert cache.dtype == np.float16
    f16 = np.concatenate([model.forward(ids[:30], 0, cache), model.forward(ids[30:], 30, cache)])
    span = f32.max(1) - f32.min(1)
    assert (np.abs(f16 - f32).max(1) / span).max() < 0.01
    assert np.mean(f16.argmax(1) == f32.argmax(1)) >= 0.95


def test_float16_cache_from_the_environment_and_bad_dtypes(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load(model_path, backend="numpy")
    monkeypatch.setenv("BITNET_KV_CACHE_TYPE", "f16")
    assert model.new_cache(8).dtype == np.float16
    monkeypatch.delenv("BITNET_KV_CACHE_TYPE")
    assert model.new_cache(8).dtype == np.float32
    with pytest.raises(ValueError, match="float32 or float16"):
        KVCache(1, 1, 4, 8, dtype=np.int8)
