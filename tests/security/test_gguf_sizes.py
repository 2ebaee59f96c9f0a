"""Sizes and counts in an uploaded GGUF file are checked against the file before anything is
sized by them: a small upload cannot make the server allocate more than the file justifies.

The server runs in this process, so its resident memory is this process's; each upload may
grow it by at most :data:`MEMORY_BOUND` (the file, its parse, the report).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFValueType

from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account
from tests.security.conftest import infer, problem, problem_codes, rss_bytes, upload

MEMORY_BOUND = 64 * 1024**2
U32, U64 = GGUFValueType.UINT32, GGUFValueType.UINT64


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sizes")


def _file(folder: Path, name: str, **overrides: Any) -> bytes:
    return build_model(folder / f"{name}.gguf", metadata_overrides=overrides).read_bytes()


def test_block_count_is_bounded_by_the_tensors(live_server: Any, attacker: Account,
                                               folder: Path) -> None:
    data = _file(folder, "blocks", **{"bitnet.block_count": (65_536, U32)})
    gc.collect()
    before = rss_bytes()
    for multipart in (True, False):
        r = upload(live_server, attacker, data, f"blocks-{multipart}", multipart=multipart)
        assert problem_codes(r) == ["bad_hparams"]  # one problem, not 720 896 missing tensors
        assert "11 per block" in problem(r, 422)["problems"][0]["message"]
    gc.collect()
    assert rss_bytes() - before < MEMORY_BOUND


@pytest.mark.parametrize(("key", "value"), [
    ("bitnet.embedding_length", (2**40, U64)),
    ("bitnet.feed_forward_length", (2**33, U64)),
    ("bitnet.attention.key_length", (2**31, U32)),
    ("bitnet.vocab_size", (2**40, U64)),
])
def test_widths_beyond_the_files_weights_are_refused(live_server: Any, attacker: Account,
                                                     folder: Path, key: str, value: Any) -> None:
    overrides = {key: value}
    if key == "bitnet.vocab_size":  # the width comes from the key when the token list is gone
        overrides["tokenizer.ggml.tokens"] = None
    r = upload(live_server, attacker, _file(folder, key, **overrides), key)
    assert "bad_hparams" in problem_codes(r)
    assert any("weights the file declares" in p["message"] for p in problem(r, 422)["problems"])


def test_context_length_is_bounded(live_server: Any, attacker: Account, folder: Path) -> None:
    r = upload(live_server, attacker, _file(folder, "ctx", **{"bitnet.context_length": (2**40, U64)}),
               "ctx")
    assert problem_codes(r) == ["bad_hparams"]


def test_a_file_within_bounds_still_serves(live_server: Any, attacker: Account,
                                           folder: Path) -> None:
    r = upload(live_server, attacker, _file(folder, "fine"), "fine")
    assert r.status_code == 201, r.text
    answer = infer(live_server, attacker, model=r.json()["id"], prompt="Hi", max_tokens=2)
    assert answer.status_code == 200, answer.text
