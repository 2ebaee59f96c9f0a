"""The batched step against the one-sequence forward pass, on every available backend.

A step mixes decode tokens and prompt chunks of several sequences. Each
sequence must get what ``forward`` gives it alone, bitwise: KV caches (the
projections are per token and exact) and logits (the output head works row by
row); and a sequence's logits must be bitwise the same
alone and in any batch (what makes batched generation deterministic).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitnet_sdk.backends import available
from bitnet_sdk.model.batch import SeqChunk, forward_batch
from bitnet_sdk.model.kv_cache import ContextOverflowError
from bitnet_sdk.model.loader import Model, load
from bitnet_sdk.testing.synthetic import build_model

BACKENDS = sorted(i.name for i in available() if i.available)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "m.gguf"
    return build_model(path, n_layers=2, context_length=128)


@pytest.fixture(scope="module", params=BACKENDS)
def model(request: pytest.FixtureRequest, model_file: Path) -> Model:
    return load(model_file, backend=request.param)


def _prompts(model: Model, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, model.config.vocab_size, size=int(rng.integers(3, 20)))
            for _ in range(n)]


def _caches_equal(a: object, b: object, length: int) -> bool:
    return all(np.array_equal(x[:length], y[:length])
               for x, y in zip(a._k + a._v, b._k + b._v, strict=True))  # type: ignore[attr-defined]


def test_numpy_is_among_the_backends() -> None:
    assert "numpy" in BACKENDS  # the exact yardstick; never skipped silently


def test_a_mixed_step_matches_forward_per_sequence(model: Model) -> None:
    prompts = _prompts(model, 3)
    # Sequence 0 and 1 have their prompts cached and decode one token; 2 sends its prompt.
    alone = [model.new_cache() for _ in prompts]
    batched = [model.new_cache() for _ in prompts]
    for p, a, b in zip(prompts[:2], alone[:2], batched[:2], strict=True):
        model.forward(p, 0, a)
        model.forward(p, 0, b)
    decode = [7, 11]
    expected = [model.forward([decode[0]], len(prompts[0]), alone[0])[0],
                model.forward([decode[1]], len(prompts[1]), alone[1])[0],
                model.forward(prompts[2], 0, alone[2])[-1]]
    chunks = [SeqChunk(np.array([decode[0]]), len(prompts[0]), batched[0]),
              SeqChunk(np.array([decode[1]]), len(prompts[1]), batched[1]),
              SeqChunk(prompts[2], 0, batched[2])]
    got = forward_batch(model.weights, model.config, model.backend, chunks)
    for i, (a, b) in enumerate(zip(alone, batched, strict=True)):
        assert b.length == a.length
        assert _caches_equal(a, b, a.length), f"sequence {i}: KV cache differs"
    # The same per-token and per-sequence arithmetic, the same row-wise head: bitwise.
    for i in range(3):
        assert got[i] is not None and np.array_equal(got[i], expected[i]), f"sequence {i}"


def test_a_sequence_gets_the_same_logits_alone_and_in_any_batch(model: Model) -> None:
    prompts = _prompts(model, 9, seed=1)

    def run(members: list[int]) -> dict[int, list[np.ndarray]]:
        caches = {i: model.new_cache() for i in members}
        out: dict[int, list[np.ndarray]] = {i: [] for i in members}
        pos = dict.fromkeys(members, 0)
        last: dict[int, int] = {}
        for _ in range(4):  # a prompt step, then three decode steps
            chunks = [SeqChunk(prompts[i] if i not in last else np.array([last[i]]), pos[i],
                               caches[i]) for i in members]
            for i, chunk, logits in zip(members, chunks, forward_batch(
                    model.weights, model.config, model.backend, chunks), strict=True):
                assert logits is not None
                out[i].append(logits)
                pos[i] += chunk.token_ids.shape[0]
                last[i] = int(np.argmax(logits))
        return out

    alone = run([4])[4]
    for members in ([4, 0], [1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4]):
        together = run(members)[4]
        for step, (a, b) in enumerate(zip(alone, together, strict=True)):
            assert np.array_equal(a, b), f"step {step} differs in batch {members}"


def test_chunks_without_logits_and_bad_steps(model: Model) -> None:
    prompt = _prompts(model, 1, seed=2)[0]
    cache = model.new_cache()
    first = forward_batch(model.weights, model.config, model.backend,
                          [SeqChunk(prompt[:2], 0, cache, logits=False)])
    assert first == [None] and cache.length == 2
    with pytest.raises(ValueError, match="own KV cache"):
        forward_batch(model.weights, model.config, model.backend,
                      [SeqChunk(prompt[2:3], 2, cache), SeqChunk(prompt[3:4], 3, cache)])
    with pytest.raises(ValueError, match="token ids"):
        forward_batch(model.weights, model.config, model.backend,
                      [SeqChunk(np.array([model.config.vocab_size]), 2, cache)])
    small = model.new_cache(3)
    other = model.new_cache()
    with pytest.raises(ContextOverflowError):
        forward_batch(model.weights, model.config, model.backend,
                      [SeqChunk(prompt[:2], 0, other), SeqChunk(prompt[:4], 0, small)])
    assert other.length == 0 and small.length == 0  # nothing advanced


def test_a_cache_copy_continues_like_the_original(model: Model) -> None:
    prompt = _prompts(model, 1, seed=3)[0]
    cache = model.new_cache()
    model.forward(prompt, 0, cache)
    fork = model.new_cache(len(prompt) + 4)
    fork.copy_from(cache)
    a = model.forward([5], len(prompt), cache)
    b = model.forward([5], len(prompt), fork)
    assert np.array_equal(a, b) and fork.length == cache.length


@pytest.mark.parametrize(("vocab", "d"), [(32000, 64), (700, 48), (100, 16)])
def test_row_products_are_the_product_row_by_row(vocab: int, d: int) -> None:
    from bitnet_sdk.backends.ops import row_products

    rng = np.random.default_rng(vocab)
    w = rng.standard_normal((vocab, d)).astype(np.float32)
    h = rng.standard_normal((17, d)).astype(np.float32)
    full = row_products(h, w)
    np.testing.assert_allclose(full, h.astype(np.float64) @ w.T.astype(np.float64),
                               rtol=1e-4, atol=1e-4)
    for rows in ([0], [3, 0], list(range(16, -1, -2))):
        assert np.array_equal(row_products(h[rows], w), full[rows]), rows
