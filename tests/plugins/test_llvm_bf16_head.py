"""A BF16 embedding/head stays BF16 on the llvm backend and gives the reference's logits."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from bitnet_kernels import HeadMatrix
from bitnet_llvm import LlvmBackend

from bitnet_sdk.model.loader import load
from bitnet_sdk.testing.synthetic import build_model


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def bf16_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bf16") / "m.gguf"
    return build_model(path, n_layers=2, embedding_type="bf16", tie_embeddings=request.param, seed=5)


def test_the_head_is_a_bf16_view_of_the_file_and_matches_numpy(bf16_model: Path) -> None:
    ours = load(bf16_model, backend=LlvmBackend())
    head = ours.weights.output
    assert isinstance(head, HeadMatrix) and head.kind == "bf16"
    assert head.data.dtype == ml_dtypes.bfloat16 and not head.data.flags.owndata  # no float32 copy
    assert ours.weights.token_embd.dtype == ml_dtypes.bfloat16
    reference = load(bf16_model, backend="numpy")  # float32 products of the same values
    ids = np.random.default_rng(1).integers(0, ours.config.vocab_size, 12)
    got = ours.forward(ids, 0, ours.new_cache(16))
    want = reference.forward(ids, 0, reference.new_cache(16))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert (got.argmax(1) == want.argmax(1)).all()


def test_bf16_head_equals_the_float32_head_it_stands_for(bf16_model: Path) -> None:
    """The kernel computes the same products as a float32 head holding the BF16 values."""
    model = load(bf16_model, backend=LlvmBackend())
    lib = model.backend.kernels
    x = np.random.default_rng(2).standard_normal((3, model.config.d_model)).astype(np.float32)
    as_f32 = lib.prepare_head(model.weights.output.data.astype(np.float32))
    np.testing.assert_array_equal(lib.head(model.weights.output, x), lib.head(as_f32, x))
