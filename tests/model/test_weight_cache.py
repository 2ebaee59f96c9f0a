"""The prepared-weight cache: written once, mapped afterwards, keyed by the file's identity."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from bitnet_kernels import HeadMatrix, PackedTernary
from bitnet_llvm import LlvmBackend

from bitnet_sdk.model.loader import load
from bitnet_sdk.model.weight_cache import WeightCache, cache_root
from bitnet_sdk.testing.synthetic import build_model


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BITNET_WEIGHT_CACHE_MIN_MB", "0")
    return cache_root()


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return build_model(tmp_path / "m.gguf", qtype="tq2_0", n_layers=2)


def _files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.bnw")) if cache.exists() else []


def test_second_load_maps_the_cache_and_gives_the_same_logits(cache: Path, model_path: Path) -> None:
    ids = np.arange(12)
    first = load(model_path, backend=LlvmBackend())
    assert len(_files(cache)) == 1
    second = load(model_path, backend=LlvmBackend())
    w = second.weights.layers[0].wqkv
    assert isinstance(w, PackedTernary) and not w.data.flags.writeable  # a view of the cache file
    assert isinstance(w.data.base, memoryview) or w.data.base is not None
    np.testing.assert_array_equal(w.data, first.weights.layers[0].wqkv.data)
    np.testing.assert_array_equal(second.forward(ids), first.forward(ids))


def test_int8_head_is_cached_under_its_own_key(cache: Path, model_path: Path) -> None:
    load(model_path, backend=LlvmBackend())
    first = load(model_path, backend=LlvmBackend(head="int8"))
    assert len(_files(cache)) == 2  # another layout: another entry
    second = load(model_path, backend=LlvmBackend(head="int8"))
    assert isinstance(second.weights.output, HeadMatrix) and second.weights.output.kind == "i8"
    assert not second.weights.output.data.flags.writeable
    np.testing.assert_array_equal(second.weights.output.data, first.weights.output.data)


def test_a_changed_file_gets_a_new_entry_and_the_old_one_goes(cache: Path, model_path: Path) -> None:
    load(model_path, backend=LlvmBackend())
    (old,) = _files(cache)
    build_model(model_path, qtype="tq2_0", n_layers=2, seed=1)  # same path, other weights
    os.utime(model_path, ns=(1, 1))
    fresh = load(model_path, backend=LlvmBackend())
    (new,) = _files(cache)
    assert new != old
    reference = load(model_path, backend="numpy")
    ids = np.arange(8)
    np.testing.assert_allclose(fresh.forward(ids), reference.forward(ids), rtol=0, atol=1e-3)


def test_a_damaged_cache_file_is_ignored_and_rewritten(cache: Path, model_path: Path) -> None:
    good = load(model_path, backend=LlvmBackend()).forward([1, 2, 3])
    (entry,) = _files(cache)
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated
    assert not WeightCache(model_path, LlvmBackend()).hit
    np.testing.assert_array_equal(load(model_path, backend=LlvmBackend()).forward([1, 2, 3]), good)
    assert WeightCache(model_path, LlvmBackend()).hit  # rewritten whole
    entry.write_bytes(b"not a cache file at all")
    np.testing.assert_array_equal(load(model_path, backend=LlvmBackend()).forward([1, 2, 3]), good)


def test_switched_off_small_or_uncacheable_backends_write_nothing(
    cache: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITNET_WEIGHT_CACHE", "off")
    load(model_path, backend=LlvmBackend())
    monkeypatch.delenv("BITNET_WEIGHT_CACHE")
    monkeypatch.setenv("BITNET_WEIGHT_CACHE_MIN_MB", "64")  # this model is far smaller
    load(model_path, backend=LlvmBackend())
    monkeypatch.setenv("BITNET_WEIGHT_CACHE_MIN_MB", "0")
    load(model_path, backend="numpy")  # no layout_version: never cached
    assert _files(cache) == []
