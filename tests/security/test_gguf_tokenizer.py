"""A GGUF vocabulary that cannot tokenize fails validation at upload, instead of passing and
then failing every inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bitnet_sdk.testing.synthetic import build_model, tiny_bpe_vocab
from tests.conftest import Account
from tests.security.conftest import problem, problem_codes, upload


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vocab")


def _unknown_result() -> str:
    """A merge of two known tokens whose joined text is not a token."""
    tokens = set(tiny_bpe_vocab().tokens)
    singles = sorted(t for t in tokens if len(t) == 1)
    return next(f"{a} {b}" for a in singles for b in singles if a + b not in tokens)


@pytest.mark.parametrize("bad_merge", ["unknown\u0120 tokens", "known-parts"])
def test_merges_naming_unknown_tokens_are_refused(live_server: Any, attacker: Account,
                                                  folder: Path, bad_merge: str) -> None:
    if bad_merge == "known-parts":
        bad_merge = _unknown_result()
    merges = [*tiny_bpe_vocab().merges, bad_merge]
    path = build_model(folder / "merges.gguf", metadata_overrides={"tokenizer.ggml.merges": merges})
    r = upload(live_server, attacker, path.read_bytes(), "merges")
    assert problem_codes(r) == ["bad_tokenizer"]
    assert "merges" in problem(r, 422)["problems"][0]["message"]
