"""The llvm backend's per-op forward step (the reference of its compiled step) equals the
per-op forward pass bit for bit on every variant; ``test_llvm_compiled_step.py`` checks the
compiled one-token step against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bitnet_llvm import LlvmBackend

from bitnet_sdk.model.llm import forward
from bitnet_sdk.model.loader import load
from bitnet_sdk.testing.parity import build_conditioned_model

#: Every model variant the tests build: storage types, architectures, GQA, activations, RoPE.
VARIANTS = {
    "tq2_0-gqa-silu": dict(qtype="tq2_0", n_heads=4, n_kv_heads=2),
    "tq1_0-mha": dict(qtype="tq1_0", n_heads=4, n_kv_heads=4),
    "i2_s-bitnet-b1.58": dict(qtype="i2_s", arch="bitnet-b1.58", n_heads=4, n_kv_heads=1),
    "f32": dict(qtype="f32", n_heads=4, n_kv_heads=2),
    "tq2_0-relu2": dict(qtype="tq2_0", n_heads=8, n_kv_heads=2, hidden_act="relu2"),
    "tq2_0-partial-rope": dict(qtype="tq2_0", n_heads=4, n_kv_heads=2,
                               metadata_overrides={"bitnet.rope.dimension_count": 32}),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fused") / f"{request.param}.gguf"
    return build_conditioned_model(path, n_layers=2, d_model=256, d_ff=512, seed=3, **VARIANTS[request.param])


def test_fused_step_equals_the_per_op_pass(model_path: Path) -> None:
    model = load(model_path, backend=LlvmBackend())
    assert model.step is not None
    per_op_step = getattr(model.step, "per_op", model.step)  # the compiled step's per-op half
    if "partial" in model_path.name:
        assert model.config.rope_dim < model.config.head_dim
    ids = np.random.default_rng(4).integers(0, model.config.vocab_size, 20)

    def run(step: object) -> tuple[np.ndarray, np.ndarray]:
        cache = model.new_cache(32)
        prompt = forward(model.weights, model.config, model.backend, ids[:16], 0, cache, step=step)  # type: ignore[arg-type]
        steps = [forward(model.weights, model.config, model.backend, ids[i : i + 1], i, cache, step=step)  # type: ignore[arg-type]
                 for i in range(16, 20)]  # fmt: skip
        return prompt, np.concatenate(steps)

    fused, per_op = run(per_op_step), run(None)
    np.testing.assert_array_equal(fused[0], per_op[0])  # same kernels, same order: bit for bit
    np.testing.assert_array_equal(fused[1], per_op[1])
    last = [forward(model.weights, model.config, model.backend, ids, 0, model.new_cache(32),
                    last_only=True, step=step) for step in (per_op_step, None)]  # fmt: skip
    np.testing.assert_array_equal(last[0], last[1])


def test_the_fused_step_can_be_switched_off(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITNET_FUSED_FORWARD", "off")
    assert load(model_path, backend=LlvmBackend()).step is None
    assert load(model_path, backend="numpy").step is None  # no fused capability: per op
