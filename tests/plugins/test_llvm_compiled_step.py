"""The llvm backend's compiled forward step equals its per-op step on every model variant.

The compiled step (one native call per step: a decode token or a prompt chunk over GEMM tiles,
threads meeting at native barriers) is built from
the per-op kernels' own IR builders, attention included (``bitnet_kernels.attention``, which the
backend's per-op ``attention`` runs too), so logits and caches are compared bit for bit. Each test
also says which path ran (``native_steps``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from bitnet_llvm import LlvmBackend
from bitnet_llvm.forward import LlvmForwardStep
from bitnet_llvm.fused import CompiledForwardStep

from bitnet_sdk.model.batch import fused_step_is_exact
from bitnet_sdk.model.llm import forward
from bitnet_sdk.model.loader import Model, load
from bitnet_sdk.testing.parity import build_conditioned_model

from .test_llvm_forward import VARIANTS

PROMPT, STEPS = 12, 20


def _caches_equal(a: object, b: object) -> None:
    n = a.length  # type: ignore[attr-defined]
    assert b.length == n  # type: ignore[attr-defined]
    for x, y in zip(a._k + a._v, b._k + b._v, strict=True):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(x[:n], y[:n])


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
def test_the_compiled_step_equals_the_per_op_step(model_path: Path, head: str) -> None:
    model = load(model_path, backend=LlvmBackend(head=head))
    step = model.step
    assert isinstance(step, CompiledForwardStep)  # every variant the tests build compiles
    assert model.weights.output.kind in ({"i8"} if head == "int8" else {"f16", "f32"})  # the head kernel it runs
    ids = np.random.default_rng(4).integers(0, model.config.vocab_size, PROMPT + STEPS)
    compiled, cache_c = _decode(model, step, ids)
    assert step.native_steps == STEPS + 1  # the prompt and every decode step ran compiled
    reference, cache_r = _decode(model, step.per_op, ids)
    assert step.native_steps == STEPS + 1
    np.testing.assert_array_equal(compiled, reference)
    _caches_equal(cache_c, cache_r)


@pytest.mark.parametrize("threads", [1, 3])
def test_the_thread_count_does_not_change_the_logits(model_path: Path, threads: int) -> None:
    """Rows and heads are split differently, but each value is computed by one thread the same way."""
    ids = np.random.default_rng(5).integers(0, 200, PROMPT + STEPS)
    runs = []
    for n in (2, threads):
        model = load(model_path, backend=LlvmBackend(num_threads=n))
        assert isinstance(model.step, CompiledForwardStep)
        runs.append(_decode(model, model.step, ids)[0])
        assert model.step.native_steps == STEPS + 1
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
    caches, logits = [model.new_cache(256), model.new_cache(256)], []
    for s, cache in zip((step, step.per_op), caches, strict=True):
        forward(model.weights, model.config, model.backend, ids[:4], 0, cache, step=s)
        logits.append([forward(model.weights, model.config, model.backend, ids[i : i + 1], i, cache, step=s)
                       for i in range(4, 160)])  # fmt: skip
    assert step.native_steps == 157
    np.testing.assert_array_equal(np.concatenate(logits[0]), np.concatenate(logits[1]))
    _caches_equal(*caches)
    fork = model.new_cache(256)
    fork.copy_from(caches[1], 100)  # a sequence sharing the first 100 positions
    forked = forward(model.weights, model.config, model.backend, ids[100:101], 100, fork, step=step)
    assert step.native_steps == 158
    np.testing.assert_array_equal(forked, logits[1][96])  # position 100 on the uninterrupted run


def test_the_scheduler_finds_the_compiled_step_bitwise_equal_to_a_batch(model_path: Path) -> None:
    """The batching scheduler routes lone sequences through the compiled step only when its probe
    finds it bitwise equal to the batched step (``model.batch.fused_step_is_exact``)."""
    model = load(model_path, backend=LlvmBackend())
    assert isinstance(model.step, CompiledForwardStep)
    assert fused_step_is_exact(model)
    assert model.step.native_steps >= 1  # the probe's decode token ran compiled


def _chunks(model: Model, step: object, ids: np.ndarray, sizes: list[int], last_only: bool) -> tuple[list[np.ndarray], object]:
    cache, out, at = model.new_cache(64), [], 0
    for n in sizes:
        out.append(forward(model.weights, model.config, model.backend, ids[at : at + n], at, cache,  # type: ignore[arg-type]
                           last_only=last_only, step=step))  # fmt: skip
        at += n
    return out, cache


@pytest.mark.parametrize("last_only", [True, False])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_prompt_chunks_equal_the_per_op_step(model_path: Path, last_only: bool, threads: int) -> None:
    """Chunks below one GEMM token tile (the GEMV tile), whole tiles and padded tiles, each
    after cached positions: every row's logits (or the last row's) and the whole cache."""
    model = load(model_path, backend=LlvmBackend(num_threads=threads))
    step = model.step
    assert isinstance(step, CompiledForwardStep)
    ids = np.random.default_rng(9).integers(0, model.config.vocab_size, 40)
    sizes = [3, 8, 13, 1, 2, 5]
    compiled, cache_c = _chunks(model, step, ids, sizes, last_only)
    assert step.native_steps == len(sizes)
    reference, cache_r = _chunks(model, step.per_op, ids, sizes, last_only)
    assert step.native_steps == len(sizes)
    for a, b, n in zip(compiled, reference, sizes, strict=True):
        assert a.shape == (1 if last_only else n, model.config.vocab_size)
        np.testing.assert_array_equal(a, b)
    _caches_equal(cache_c, cache_r)


@pytest.mark.parametrize("last_only", [True, False])
def test_a_long_chunk_runs_in_pieces_with_the_same_values(model_path: Path, last_only: bool) -> None:
    """Chunks longer than ``max_chunk`` run as several native calls (bounded buffers)."""
    model = load(model_path, backend=LlvmBackend(num_threads=2))
    step = model.step
    assert isinstance(step, CompiledForwardStep)
    step.max_chunk = 5  # pieces of 5, 5, 5, 5, 5, 5, 2 tokens and of 5, 1
    ids = np.random.default_rng(10).integers(0, model.config.vocab_size, 38)
    compiled, cache_c = _chunks(model, step, ids, [32, 6], last_only)
    assert step.native_steps == 2
    reference, cache_r = _chunks(model, step.per_op, ids, [32, 6], last_only)
    for a, b in zip(compiled, reference, strict=True):
        np.testing.assert_array_equal(a, b)
    _caches_equal(cache_c, cache_r)


def test_an_f16_cache_takes_the_per_op_path(model_path: Path) -> None:
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
