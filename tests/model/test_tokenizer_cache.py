"""The built BPE tokenizer is cached beside the weight cache and read back by later loads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from bitnet_sdk.model import tokenizer_cache
from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.model.tokenizer import Tokenizer, TokenizerSpec
from bitnet_sdk.model.tokenizer_cache import TokenizerCache
from bitnet_sdk.testing.synthetic import build_model

TEXTS = ["Hello, world! 123", "The quick brown fox jumps over the lazy dog.", "  spaces\n\nand lines"]


def _tokenizer(path: Path) -> Tokenizer:
    """A tokenizer as ``load`` makes it: vocabulary read in place, the cache entry of the file."""
    mf = read_model(path)
    spec = TokenizerSpec.from_metadata(mf.metadata, check_merges=False)
    return Tokenizer(spec, cache=TokenizerCache.for_file(path, len(spec.tokens)))


@pytest.fixture
def cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small model whose vocabulary is cached (the size threshold lowered)."""
    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tokenizer_cache, "MIN_TOKENS", 1)
    return build_model(tmp_path / "m.gguf", qtype="f16", n_layers=1)


def _entries(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "tokenizers").glob("*.json"))


def test_first_use_writes_the_entry_and_later_tokenizers_read_it(cached: Path, tmp_path: Path) -> None:
    reference = Tokenizer.from_gguf(cached)  # built from the vocabulary, no cache
    first = _tokenizer(cached)
    assert _entries(tmp_path) == []  # building waits for the first use
    expected = [reference.encode(t) for t in TEXTS]
    assert [first.encode(t) for t in TEXTS] == expected
    (entry,) = _entries(tmp_path)
    assert [_tokenizer(cached).encode(t) for t in TEXTS] == expected
    # the entry is what a later tokenizer uses: another model's BPE stored there is obeyed
    other = HFTokenizer(models.BPE({"H": 0, "e": 1}, []))
    entry.write_text(other.to_str())
    assert _tokenizer(cached)._bpe.to_str() == other.to_str()


def test_a_damaged_entry_is_rebuilt(cached: Path, tmp_path: Path) -> None:
    expected = [Tokenizer.from_gguf(cached).encode(t) for t in TEXTS]
    _tokenizer(cached).encode("x")
    (entry,) = _entries(tmp_path)
    entry.write_text('{"version": "1.0", "model": ')
    assert [_tokenizer(cached).encode(t) for t in TEXTS] == expected
    assert HFTokenizer.from_str(entry.read_text())  # rewritten whole


def test_a_changed_file_gets_a_new_entry_replacing_the_old(cached: Path, tmp_path: Path) -> None:
    _tokenizer(cached).encode("x")
    (old,) = _entries(tmp_path)
    st = cached.stat()
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _tokenizer(cached).encode("x")
    (new,) = _entries(tmp_path)
    assert new != old


def test_small_vocabularies_and_switched_off_caches_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path / "cache"))
    path = build_model(tmp_path / "m.gguf", qtype="f16", n_layers=1)
    assert TokenizerCache.for_file(path, 512) is None  # below MIN_TOKENS
    monkeypatch.setenv("BITNET_TOKENIZER_CACHE", "off")
    assert TokenizerCache.for_file(path, 10**6) is None
    _tokenizer(path).encode("x")
    assert _entries(tmp_path) == []


def test_merges_naming_unknown_tokens_fail_at_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bitnet_sdk.model.tokenizer import TokenizerError
    from bitnet_sdk.testing.synthetic import tiny_bpe_vocab

    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path / "cache"))
    merges = ["zz qq", *tiny_bpe_vocab().merges[1:]]
    path = build_model(tmp_path / "m.gguf", qtype="f16", n_layers=1, metadata_overrides={"tokenizer.ggml.merges": merges})
    tok = _tokenizer(path)  # loading does not decode the vocabulary
    with pytest.raises(TokenizerError, match="name tokens the vocabulary does not have"):
        tok.encode("hello")
    assert _entries(tmp_path) == []
