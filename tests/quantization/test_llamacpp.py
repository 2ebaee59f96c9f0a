"""Outputs load in llama.cpp (llama-cpp-python) with the names, types and keys it expects.

Beyond loading, the logits llama.cpp computes are compared with the float64 reference run in
llama.cpp's own numerics (Q8_K activation blocks, F16 head input; see
``bitnet_sdk.model.reference``), which only agrees when every tensor and hyper-parameter was read
as we wrote it; and llama.cpp's tokenization of the converted vocabulary is compared with ours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not importable (pip install llama-cpp-python)")

from bitnet_sdk.model.config import ModelConfig  # noqa: E402
from bitnet_sdk.model.gguf_file import read_model  # noqa: E402
from bitnet_sdk.model.reference import compare_logits, reference_forward  # noqa: E402
from bitnet_sdk.model.tokenizer import Tokenizer  # noqa: E402
from bitnet_sdk.quantization.pipeline import quantize  # noqa: E402
from bitnet_sdk.testing.parity import build_conditioned_model  # noqa: E402
from tests.quantization._support import build_hf_checkpoint  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog. Numbers: 12345!"
GGML_TYPE_F32 = 0


def _llamacpp(path: Path, text: str) -> tuple[list[int], np.ndarray]:
    llm = llama_cpp.Llama(str(path), n_ctx=64, n_threads=1, logits_all=True, verbose=False,
                          type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
    try:
        ids = llm.tokenize(text.encode(), add_bos=True)
        llm.eval(ids)
        return ids, np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()


@pytest.fixture(scope="module")
def silu_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hf") / "silu"
    build_hf_checkpoint(folder, hidden_act="silu", seed=9)
    return folder


@pytest.mark.parametrize("qtype", ["tq2_0", "tq1_0"])
def test_llamacpp_runs_the_converted_checkpoint(tmp_path: Path, silu_checkpoint: Path, qtype: str) -> None:
    out = tmp_path / f"m.{qtype}.gguf"
    quantize(silu_checkpoint, out, qtype, backend="numpy")
    ids, theirs = _llamacpp(out, TEXT)
    mf = read_model(out)
    assert ids == Tokenizer.from_gguf(mf).encode(TEXT)
    ref = reference_forward(mf, ModelConfig.from_model_file(mf), ids, activations="block256", f16_head_input=True)
    agreement = compare_logits(theirs, ref)
    assert agreement.argmax_agreement == 1.0, agreement
    assert agreement.min_cosine >= 0.99999, agreement


def test_llamacpp_loads_a_relu2_checkpoint(tmp_path: Path) -> None:
    """Loads and evaluates (finite logits). The llama.cpp this tests with computes the FFN of a
    ``relu2`` model with SiLU (its ``hidden_activation`` table has no squared ReLU), so its
    logits are not compared; ours honour the key."""
    build_hf_checkpoint(tmp_path / "hf", hidden_act="relu2", seed=10)
    quantize(tmp_path / "hf", tmp_path / "m.gguf", "tq2_0", backend="numpy")
    _, logits = _llamacpp(tmp_path / "m.gguf", "Hello")
    assert logits.shape[1] == 320 and np.all(np.isfinite(logits))


def test_bitnet_cpp_i2s_becomes_a_file_llamacpp_loads(tmp_path: Path) -> None:
    # conditioned weights (scale 1/sqrt(fan_in)): a unit-normal random model is so ill-conditioned
    # that one int8 rounding difference flips later positions (see bitnet_sdk.testing.parity)
    i2s = build_conditioned_model(tmp_path / "a.gguf", qtype="i2_s", arch="bitnet-b1.58", hidden_act="silu", seed=12)
    quantize(i2s, tmp_path / "b.gguf", "tq2_0", backend="numpy")
    ids, theirs = _llamacpp(tmp_path / "b.gguf", TEXT)
    mf = read_model(tmp_path / "b.gguf")
    ref = reference_forward(mf, ModelConfig.from_model_file(mf), ids, activations="block256", f16_head_input=True)
    agreement = compare_logits(theirs, ref)
    assert agreement.argmax_agreement == 1.0, agreement
    assert agreement.min_cosine >= 0.99999, agreement
