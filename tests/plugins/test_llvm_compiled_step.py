"""The llvm backend's compiled decode step agrees with its per-op step on every model variant.

The compiled step (one native call per token, threads meeting at native barriers) shares every
kernel with the per-op step except attention, whose sums run in another order than numpy's
matmuls; so keys are compared bit for bit and logits within a bound far below any decision a
sampler makes. Each test also says which path ran (``native_steps``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from bitnet_llvm import LlvmBackend
from bitnet_llvm.forward import LlvmForwardStep
from bitnet_llvm.fused import CompiledForwardStep

from bitnet_sdk.model.llm import forward
from bitnet_sdk.model.loader import Model, load
from bitnet_sdk.testing.parity import build_conditioned_model

from .test_llvm_forward import VARIANTS

PROMPT, STEPS = 12, 20
#: Largest logit difference allowed, as a fraction of the logits' range at that position.
#: Measured: below 2e-7 on every variant (float32 rounding of attention carried through the layers).
REL_TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compiled") / f"{request.param}.gguf"
    return build_conditioned_model(path, n_layers=2, d_model=256, d_ff=512, seed=3, **VARIANTS[request.param])


def _decode(model: Model, step: object, ids: np.ndarray, cache_dtype: type = np.float32) -> tuple[np.ndarray, object]:
    """Prompt ``ids[:PROMPT]`` in one batch, then one token per step; the decode logits and the cache."""
    cache = model.new_cache(64, dtype=cache_dtype)
    forward(model.weights, model.config, model.backend, ids[:PROMPT], 0, cache, step=step)  # type: ignore[arg-type]
    logits = [forward(model.weights, model.config, model.backend, ids[i : i + 1], i, cache, step=step)  # type: ignore[arg-type]
              for i in range(PROMPT, PROMPT + STEPS)]  # fmt: skip
    return np.concatenate(logits), cache


@pytest.mark.parametrize("head", ["native", "int8"])
def test_the_compiled_step_agrees_with_the_per_op_step(model_path: Path, head: str) -> None:
    model = load(model_path, backend=LlvmBackend(head=head))
    step = model.step
    assert isinstance(step, CompiledForwardStep)  # every variant the tests build compiles
    assert model.weights.output.kind in ({"i8"} if head == "int8" else {"f16", "f32"})  # the head kernel it runs
    ids = np.random.default_rng(4).integers(0, model.config.vocab_size, PROMPT + STEPS)
    compiled, cache_c = _decode(model, step, ids)
    assert step.native_steps == STEPS  # the decode steps ran compiled, the prompt per op
    reference, cache_r = _decode(model, step.per_op, ids)
    assert step.native_steps == STEPS
    span = reference.max(axis=1) - reference.min(axis=1)
    assert np.all(np.abs(compiled - reference).max(axis=1) <= REL_TOLERANCE * span)
    top2 = np.sort(reference, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * REL_TOLERANCE * span  # no near-tie at the top
    assert np.array_equal(compiled.argmax(axis=1)[clear], reference.argmax(axis=1)[clear])
    # the first layer's keys come from the shared kernels and RoPE only: equal bit for bit
    end = PROMPT + STEPS
    assert cache_c.length == cache_r.length == end  # type: ignore[attr-defined]
    np.testing.assert_array_equal(cache_c._k[0][:end], cache_r._k[0][:end])  # type: ignore[attr-defined]
    for mine, ref in ((cache_c._k, cache_r._k), (cache_c._v, cache_r._v)):  # type: ignore[attr-defined]
        for layer in range(model.config.n_layers):
            np.testing.assert_allclose(mine[layer][:end], ref[layer][:end], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 3])
def test_the_thread_count_does_not_change_the_logits(model_path: Path, threads: int) -> None:
    """Rows and heads are split differently, but each value is computed by one thread the same way."""
    ids = np.random.default_rng(5).integers(0, 200, PROMPT + STEPS)
    runs = []
    for n in (2, threads):
        model = load(model_path, backend=LlvmBackend(num_threads=n))
        assert isinstance(model.step, CompiledForwardStep)
        runs.append(_decode(model, model.step, ids)[0])
        assert model.step.native_steps == STEPS
    np.testing.assert_array_equal(runs[0], runs[1])


def test_concurrent_generations_on_one_model_get_their_own_answers(model_path: Path) -> None:
    """Each calling thread has its own buffers; a caller that finds the pool busy runs alone."""
    model = load(model_path, backend=LlvmBackend(num_threads=2))
    rng = np.random.default_rng(6)
    prompts = [rng.integers(0, 200, PROMPT + STEPS) for _ in range(4)]
    alone = [_decode(model, model.step, ids)[0] for ids in prompts]
    together: list[np.ndarray | None] = [None] * len(prompts)

    def run(i: int) -> None:
        together[i] = _decode(model, model.step, prompts[i])[0]

    workers = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


def test_prompts_and_an_f16_cache_take_the_per_op_path(model_path: Path) -> None:
    model = load(model_path, backend=LlvmBackend())
    step = model.step
    assert isinstance(step, CompiledForwardStep)
    ids = np.random.default_rng(7).integers(0, 200, PROMPT + STEPS)
    compiled, _ = _decode(model, step, ids, np.float16)
    assert step.native_steps == 0
    np.testing.assert_array_equal(compiled, _decode(model, step.per_op, ids, np.float16)[0])


def test_the_compiled_step_can_be_switched_off(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITNET_LLVM_COMPILED_STEP", "off")
    assert type(load(model_path, backend=LlvmBackend()).step) is LlvmForwardStep
