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
#: Logit differences, as fractions of the logits' range at that position. Attention's float32
#: rounding alone stays below 2e-7 (measured on every variant); when it moves a value across an
#: int8 rounding boundary of a later quantization, one code changes by 1 and the logits by up to
#: about 0.5 % (seen a few times in 100 steps). A step must be within the first bound, and the
#: median step within the second; a wrong rotation, cache row or head is off by tens of percent.
FLIP_TOLERANCE, ROUNDING_TOLERANCE = 2e-2, 1e-5


def _assert_close(compiled: np.ndarray, reference: np.ndarray, *, steps: bool = True) -> None:
    """Every row within the flip bound; with ``steps``, the median row within the rounding bound."""
    rel = np.abs(compiled - reference).max(axis=1) / (reference.max(axis=1) - reference.min(axis=1))
    assert rel.max() <= FLIP_TOLERANCE, rel
    assert not steps or np.median(rel) <= ROUNDING_TOLERANCE, rel


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
    """Each compiled step starts from the per-op run's cache (so one step's rounding is not carried
    into the next) and must write that cache's next row and return its logits."""
    model = load(model_path, backend=LlvmBackend(head=head))
    step = model.step
    assert isinstance(step, CompiledForwardStep)  # every variant the tests build compiles
    assert model.weights.output.kind in ({"i8"} if head == "int8" else {"f16", "f32"})  # the head kernel it runs
    ids = np.random.default_rng(4).integers(0, model.config.vocab_size, PROMPT + STEPS)
    reference, ref_cache = _decode(model, step.per_op, ids)
    assert step.native_steps == 0
    fork = model.new_cache(64)
    compiled = []
    for i in range(PROMPT, PROMPT + STEPS):
        fork.copy_from(ref_cache, i)  # type: ignore[arg-type]
        compiled.append(forward(model.weights, model.config, model.backend, ids[i : i + 1], i, fork, step=step))
        assert fork.length == i + 1
        # the first layer's keys and values come from the shared kernels and RoPE only: bit for bit
        for mine, ref in ((fork._k, ref_cache._k), (fork._v, ref_cache._v)):  # type: ignore[attr-defined]
            np.testing.assert_array_equal(mine[0][i], ref[0][i])
            for layer in range(1, model.config.n_layers):
                np.testing.assert_allclose(mine[layer][i], ref[layer][i], rtol=1e-3, atol=1e-4)
    assert step.native_steps == STEPS  # the decode steps ran compiled (the prompt ran per op)
    _assert_close(np.concatenate(compiled), reference)


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


def test_a_growing_cache_and_a_forked_cache_are_followed(model_path: Path) -> None:
    """The cache's arrays are replaced when it grows (64 → 128 → 256 positions) or forks."""
    model = load(model_path, backend=LlvmBackend())
    step = model.step
    assert isinstance(step, CompiledForwardStep)
    ids = np.random.default_rng(8).integers(0, 200, 160)
    caches = [model.new_cache(256), model.new_cache(256)]
    for s, cache in zip((step, step.per_op), caches, strict=True):
        forward(model.weights, model.config, model.backend, ids[:4], 0, cache, step=s)
        for i in range(4, 160):
            forward(model.weights, model.config, model.backend, ids[i : i + 1], i, cache, step=s)
    assert step.native_steps == 156
    mine, ref = caches
    for a, b in ((mine._k[0], ref._k[0]), (mine._v[0], ref._v[0])):  # the first layer's rows: bit for bit
        np.testing.assert_array_equal(a[:160], b[:160])
    fork = model.new_cache(256)
    fork.copy_from(ref, 100)  # a sequence sharing the first 100 positions
    forked = forward(model.weights, model.config, model.backend, ids[100:101], 100, fork, step=step)
    assert step.native_steps == 157
    ref.truncate(100)
    expected = forward(model.weights, model.config, model.backend, ids[100:101], 100, ref, step=step.per_op)
    _assert_close(forked, expected, steps=False)


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
