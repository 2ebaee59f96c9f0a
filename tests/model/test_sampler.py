"""Sampler: greedy, filters, reproducibility, logprob helpers."""

from __future__ import annotations

import numpy as np
import pytest

from bitnet_sdk.model.sampler import log_softmax, make_sampler, top_logprobs


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(1000).astype(np.float32) * 3


def test_greedy_is_argmax_and_ignores_seed(logits: np.ndarray) -> None:
    for seed in (None, 1, 2):
        assert make_sampler(temperature=0.0, seed=seed)(logits) == int(np.argmax(logits))


def test_greedy_breaks_ties_by_lowest_id() -> None:
    assert make_sampler(temperature=0.0)(np.array([0.0, 2.0, 2.0, 1.0], dtype=np.float32)) == 1


def test_same_seed_same_tokens(logits: np.ndarray) -> None:
    a = make_sampler(temperature=1.0, top_k=50, top_p=0.9, seed=42)
    b = make_sampler(temperature=1.0, top_k=50, top_p=0.9, seed=42)
    assert [a(logits) for _ in range(50)] == [b(logits) for _ in range(50)]


def test_different_seeds_differ(logits: np.ndarray) -> None:
    a = make_sampler(temperature=1.0, seed=1)
    b = make_sampler(temperature=1.0, seed=2)
    assert [a(logits) for _ in range(50)] != [b(logits) for _ in range(50)]


def test_top_k_only_returns_the_k_best(logits: np.ndarray) -> None:
    best = set(np.argsort(-logits)[:5].tolist())
    sample = make_sampler(temperature=5.0, top_k=5, seed=0)  # high temperature: spread over all 5
    drawn = {sample(logits) for _ in range(300)}
    assert drawn == best


def test_top_p_keeps_the_smallest_nucleus() -> None:
    # probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 needs the first two
    logits = np.log(np.array([0.05, 0.5, 0.15, 0.3]))
    sample = make_sampler(temperature=1.0, top_p=0.75, seed=0)
    assert {sample(logits) for _ in range(300)} == {1, 3}
    sample = make_sampler(temperature=1.0, top_p=0.81, seed=0)
    assert {sample(logits) for _ in range(500)} == {1, 3, 2}


def test_sampling_frequencies_follow_the_distribution() -> None:
    p = np.array([0.1, 0.6, 0.3])
    sample = make_sampler(temperature=1.0, seed=7)
    draws = np.bincount([sample(np.log(p)) for _ in range(6000)], minlength=3) / 6000
    np.testing.assert_allclose(draws, p, atol=0.03)


def test_temperature_sharpens() -> None:
    logits = np.log(np.array([0.4, 0.6]))
    cold, warm = make_sampler(temperature=0.1, seed=3), make_sampler(temperature=1.0, seed=3)
    # P(token 1) is 0.6 at temperature 1 and 1.5^10 / (1 + 1.5^10) ≈ 0.983 at 0.1
    assert sum(warm(logits) for _ in range(500)) < 340
    assert sum(cold(logits) for _ in range(500)) > 475


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1.0}, {"temperature": float("nan")}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}]
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        make_sampler(**kwargs)  # type: ignore[arg-type]


def test_log_softmax_normalises_and_handles_large_logits() -> None:
    lp = log_softmax(np.array([1000.0, 1000.0, -1000.0], dtype=np.float32))
    np.testing.assert_allclose(np.exp(lp).sum(), 1.0)
    np.testing.assert_allclose(lp[:2], np.log(0.5))


def test_top_logprobs_sorted_with_ties_by_id() -> None:
    lp = log_softmax(np.array([0.0, 3.0, 1.0, 3.0, 2.0]))
    top = top_logprobs(lp, 3)
    assert [t for t, _ in top] == [1, 3, 4]
    assert top[0][1] == pytest.approx(lp[1])
    assert top_logprobs(lp, 0) == []
    assert len(top_logprobs(lp, 10)) == 5
