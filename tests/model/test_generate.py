"""Generation on a real (synthetic) GGUF model: records, finish reasons, logprobs, cancel."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from bitnet_sdk.model.loader import Model, load
from bitnet_sdk.model.sampler import log_softmax
from bitnet_sdk.testing.synthetic import build_model

PROMPT = "The lazy dog"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("gen") / "gen.gguf", n_layers=2, context_length=64, seed=2)


@pytest.fixture(scope="module")
def model(model_path: Path) -> Model:
    return load(model_path)


def manual_greedy(model: Model, prompt_ids: list[int], n: int) -> tuple[list[int], list[np.ndarray]]:
    cache = model.new_cache()
    logits = model.forward(prompt_ids, 0, cache)[-1]
    out, all_logits = [], []
    for i in range(n):
        all_logits.append(logits)
        out.append(int(np.argmax(logits)))
        logits = model.forward([out[-1]], len(prompt_ids) + i, cache)[0]
    return out, all_logits


def test_greedy_follows_the_argmax_of_forward(model: Model) -> None:
    prompt_ids = model.tokenize(PROMPT)
    expected, all_logits = manual_greedy(model, prompt_ids, 10)
    steps = list(model.generate(PROMPT, max_tokens=10, logprobs=3))
    assert [s.token_id for s in steps] == expected
    assert [s.index for s in steps] == list(range(10))
    for step, logits in zip(steps, all_logits, strict=True):
        lp = log_softmax(logits)
        assert step.logprob == pytest.approx(lp[step.token_id], abs=1e-4)
        assert step.top_logprobs[0].token_id == step.token_id
        assert [t.logprob for t in step.top_logprobs] == sorted((t.logprob for t in step.top_logprobs), reverse=True)
        assert len(step.top_logprobs) == 3
    assert [s.finish_reason for s in steps] == [None] * 9 + ["length"]
    assert steps[-1].timings is not None and steps[-1].timings.generated_tokens == 10
    assert all(s.timings is None for s in steps[:-1])


def test_complete_collects_the_stream(model: Model) -> None:
    steps = list(model.generate(PROMPT, max_tokens=8))
    result = model.complete(PROMPT, max_tokens=8, logprobs=0)
    assert list(result.token_ids) == [s.token_id for s in steps]
    assert result.text == "".join(s.text for s in steps)
    assert result.finish_reason == "length"
    assert result.logprobs is not None and len(result.logprobs) == 8
    assert result.timings.prompt_tokens == len(model.tokenize(PROMPT))
    assert result.timings.prompt_tokens_per_s > 0 and result.timings.generated_tokens_per_s > 0
    assert model.complete(PROMPT, max_tokens=2).logprobs is None


def test_streamed_text_equals_decoding_all_tokens(model: Model) -> None:
    # high temperature: the random model emits stray bytes of multi-byte characters
    result = model.complete(PROMPT, max_tokens=40, temperature=50.0, seed=4)
    eog = model.eog_token_ids
    assert result.text == model.detokenize([t for t in result.token_ids if t not in eog])


def test_seeded_sampling_is_reproducible(model: Model) -> None:
    kwargs = dict(max_tokens=12, temperature=20.0, top_k=50, top_p=0.95)
    a = model.complete(PROMPT, seed=1, **kwargs).token_ids
    assert model.complete(PROMPT, seed=1, **kwargs).token_ids == a
    assert model.complete(PROMPT, seed=2, **kwargs).token_ids != a


def test_stop_string_cuts_the_text(model: Model) -> None:
    full = model.complete(PROMPT, max_tokens=24)
    assert len(full.text) > 12
    stop = full.text[6:10]
    cut = model.complete(PROMPT, max_tokens=24, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    assert list(cut.token_ids) == list(full.token_ids[: len(cut.token_ids)])


class EarlyEosModel(Model):
    """The same model, with one extra token declared end-of-generation."""

    extra_eog: int = -1

    @property
    def eog_token_ids(self) -> frozenset[int]:
        return super().eog_token_ids | {self.extra_eog}


def test_end_of_generation_token_stops_without_text(model: Model, model_path: Path) -> None:
    greedy = model.complete(PROMPT, max_tokens=10)
    stopper = greedy.token_ids[5]
    first = greedy.token_ids.index(stopper)
    eos_model = EarlyEosModel(model.config, model.weights, model.backend, model.tokenizer)
    eos_model.extra_eog = stopper
    result = eos_model.complete(PROMPT, max_tokens=10)
    assert result.finish_reason == "eos"
    assert list(result.token_ids) == list(greedy.token_ids[: first + 1])
    assert result.text == model.detokenize(list(greedy.token_ids[:first]))


def test_cancel_event_stops_between_tokens(model: Model) -> None:
    cancel = threading.Event()
    seen = []
    for step in model.generate(PROMPT, max_tokens=50, cancel=cancel):
        seen.append(step)
        if len(seen) == 3:
            cancel.set()
    assert len(seen) == 3 and seen[-1].finish_reason is None
    calls = iter(range(100))
    result = model.complete(PROMPT, max_tokens=50, cancel=lambda: next(calls) >= 5)
    assert result.finish_reason == "cancelled"
    assert 0 < len(result.token_ids) < 50


def test_context_window_ends_generation(tmp_path: Path) -> None:
    small = load(build_model(tmp_path / "small.gguf", n_layers=1, context_length=16, seed=3))
    prompt_ids = small.tokenize(PROMPT)
    result = small.complete(PROMPT, max_tokens=100)
    assert result.finish_reason in ("length", "eos")
    assert len(prompt_ids) + len(result.token_ids) <= 16
    with pytest.raises(ValueError, match="context window"):
        small.complete(list(range(16)), max_tokens=1)


@pytest.mark.parametrize(
    "kwargs", [{"max_tokens": 0}, {"logprobs": -1}, {"temperature": -0.5}, {"top_p": 0.0}]
)
def test_bad_arguments_are_rejected_before_iteration(model: Model, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        model.generate(PROMPT, **kwargs)  # no next(): a server answers 400 before streaming


def test_empty_prompt_is_rejected(model: Model) -> None:
    with pytest.raises(ValueError, match="empty"):
        model.complete([], max_tokens=1)
