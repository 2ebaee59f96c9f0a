"""Two models computing at the same time in two threads give what each gives alone.

The kernels' activation buffers are reused between calls (``KernelLibrary``'s scratch);
they must belong to the calling thread, or one model's activations would overwrite the
other's mid-matmul. The models differ in width, so shared buffers would also be resized
under a running kernel.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from bitnet_llvm import LlvmBackend

from bitnet_sdk.model.llm import forward
from bitnet_sdk.model.loader import Model, load
from bitnet_sdk.testing.parity import build_conditioned_model

ROUNDS = 12


@pytest.fixture(scope="module", params=[1, 2], ids=["1-thread-kernels", "2-thread-kernels"])
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Model]:
    d = tmp_path_factory.mktemp("concurrent")
    narrow = build_conditioned_model(d / "narrow.gguf", n_layers=2, d_model=256, d_ff=512, seed=1)
    wide = build_conditioned_model(d / "wide.gguf", n_layers=3, d_model=512, d_ff=1024, n_heads=8,
                                   n_kv_heads=2, qtype="tq1_0", seed=2)  # fmt: skip
    backend = LlvmBackend(num_threads=request.param)
    return [load(narrow, backend=backend), load(wide, backend=backend)]


def _run(model: Model, fused: bool) -> list[np.ndarray]:
    """A 24-token prompt, then 6 decode steps; every step's logits."""
    ids = np.random.default_rng(model.config.d_model).integers(0, model.config.vocab_size, 30)
    cache = model.new_cache(32)
    step = model.step if fused else None
    out = [forward(model.weights, model.config, model.backend, ids[:24], 0, cache, step=step)]
    out += [forward(model.weights, model.config, model.backend, ids[i : i + 1], i, cache, step=step)
            for i in range(24, 30)]  # fmt: skip
    return out


@pytest.mark.parametrize("fused", [True, False], ids=["fused-step", "per-op"])
def test_two_models_in_two_threads_equal_each_alone(models: list[Model], fused: bool) -> None:
    alone = [_run(m, fused) for m in models]
    results: list[list[list[np.ndarray]]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(k: int) -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):
                results[k].append(_run(models[k], fused))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(2):
        assert len(results[k]) == ROUNDS
        for run in results[k]:
            for got, expected in zip(run, alone[k], strict=True):
                np.testing.assert_array_equal(got, expected)
