"""Text generation: a generator of typed per-token records, and its collected form.

``generate`` runs the prompt through the model in batches (one GEMM per weight
per batch), then decodes one token per step and yields a ``GenerationStep``
as soon as each token is sampled, so a server can stream it. The last record
carries ``finish_reason`` and the run's ``Timings``:

* ``"eos"`` — the model produced an end-of-generation token (its text is not shown);
* ``"stop"`` — a stop string appeared (the text is cut before it);
* ``"length"`` — ``max_tokens`` were generated or the context window is full.

Sampling: ``sampling=`` a :class:`~bitnet_sdk.model.sampler.SamplingParams`, or its
fields as keywords (``temperature=0.7, top_k=40``; they override ``sampling``'s).

Cancellation: pass ``cancel`` (a ``threading.Event`` or any callable returning
``True`` to stop). It is checked before every forward pass — between prompt
batches and between tokens — and generation then ends without a finishing
record; ``complete`` reports ``finish_reason == "cancelled"``. Closing the
generator (``gen.close()``) works too when the consumer owns the thread.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bitnet_sdk.model.kv_cache import KVCache
from bitnet_sdk.model.sampler import SamplingParams, log_softmax, make_sampler, top_logprobs
from bitnet_sdk.model.textstream import IncrementalDetokenizer, StopMatcher

__all__ = [
    "Completion",
    "GenerationStep",
    "SequenceDecoder",
    "Timings",
    "TopLogprob",
    "complete",
    "generate",
    "new_decoder",
]

#: Prompt tokens per forward pass: bounds the attention score buffer ``[heads, batch, t]``.
PROMPT_BATCH = 512

CancelHook = threading.Event | Callable[[], bool] | None


class _Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


class _Generator(Protocol):
    """What ``generate`` needs from a model (``loader.Model`` provides it)."""

    @property
    def tokenizer(self) -> _Tokenizer: ...
    @property
    def context_length(self) -> int: ...
    @property
    def eog_token_ids(self) -> frozenset[int]: ...
    def new_cache(self, max_positions: int | None = None) -> KVCache: ...
    def forward(
        self, token_ids: Sequence[int] | np.ndarray, start_pos: int = 0,
        cache: KVCache | None = None, *, last_only: bool = False,
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class TopLogprob:
    """One candidate token and its log-probability under the model."""

    token_id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class Timings:
    """Wall-clock cost of one generation."""

    prompt_tokens: int
    generated_tokens: int
    prompt_s: float
    generate_s: float

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def generated_tokens_per_s(self) -> float:
        return self.generated_tokens / self.generate_s if self.generate_s > 0 else 0.0


@dataclass(frozen=True)
class GenerationStep:
    """One generated token.

    ``text`` is the text this token makes visible: it may be empty (half of a
    multi-byte character, text held back while it might start a stop string,
    the end-of-generation token) and may include text of earlier tokens.
    ``logprob`` is the token's log-probability under the model (before
    temperature and filters); ``top_logprobs`` the ``logprobs`` most likely
    alternatives. ``finish_reason`` and ``timings`` are set on the last record.
    """

    index: int
    token_id: int
    text: str
    logprob: float
    top_logprobs: tuple[TopLogprob, ...] = ()
    finish_reason: str | None = None
    timings: Timings | None = None


@dataclass(frozen=True)
class Completion:
    """A whole generation, collected.

    ``token_ids`` are every sampled token, including a final end-of-generation
    token (whose text is not part of ``text``) and the tokens that spelled a
    stop string (which is cut from ``text``).
    """

    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    text: str
    finish_reason: str
    timings: Timings
    logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[tuple[TopLogprob, ...], ...] | None = field(default=None)


def _cancelled(cancel: CancelHook) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def _prompt_ids(model: _Generator, prompt: str | Sequence[int]) -> list[int]:
    ids = model.tokenizer.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    if not ids:
        raise ValueError("the prompt is empty")
    if len(ids) >= model.context_length:
        raise ValueError(
            f"the prompt has {len(ids)} tokens; the context window is {model.context_length}"
        )
    return ids


def generate(
    model: _Generator,
    prompt: str | Sequence[int],
    *,
    max_tokens: int = 256,
    stop: Sequence[str] = (),
    logprobs: int = 0,
    cancel: CancelHook = None,
    sampling: SamplingParams | None = None,
    **options: Any,
) -> Iterator[GenerationStep]:
    """An iterator of one ``GenerationStep`` per generated token (see the module docstring).

    ``prompt`` is text (tokenized with the model's tokenizer, BOS added as the
    file asks) or token ids used as given. Arguments are checked here, before
    any work: ``ValueError`` for an empty prompt, one that fills the context
    window, or bad sampling settings, so a server can answer 400 before it
    starts streaming.
    """
    decoder = new_decoder(model, prompt, max_tokens=max_tokens, stop=stop, logprobs=logprobs,
                          sampling=sampling, **options)
    return _run(model, decoder, cancel)


def new_decoder(
    model: _Generator,
    prompt: str | Sequence[int],
    *,
    max_tokens: int = 256,
    stop: Sequence[str] = (),
    logprobs: int = 0,
    sampling: SamplingParams | None = None,
    **options: Any,
) -> SequenceDecoder:
    """The checked decoder of one generation (arguments as :func:`generate`; its ``ids``
    are the prompt's tokens). ``ValueError`` for what :func:`generate` refuses."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if logprobs < 0:
        raise ValueError(f"logprobs must be >= 0, got {logprobs}")
    sample = make_sampler(_sampling(sampling, options))
    ids = _prompt_ids(model, prompt)
    return SequenceDecoder(model, ids, sample, max_tokens, tuple(stop), logprobs)


def _sampling(sampling: SamplingParams | None, options: dict[str, Any]) -> SamplingParams:
    """``sampling`` with ``options`` (sampler keywords: ``temperature=``, ``top_k=`` …) applied."""
    return SamplingParams(**options) if sampling is None else dataclasses.replace(sampling, **options)


class SequenceDecoder:
    """One sequence's side of decoding: logits in, ``GenerationStep`` out.

    Samples with the sequence's own sampler (its own seed), computes logprobs,
    turns tokens into visible text (half characters and possible stop strings
    held back) and decides when the sequence is finished. It does no model
    work, so the same object serves the one-sequence loop here and a batching
    scheduler that computes the logits of many sequences in one step.
    """

    def __init__(self, model: _Generator, ids: Sequence[int], sample: Callable[[np.ndarray], int],
                 max_tokens: int, stop: Sequence[str], logprobs: int) -> None:
        self._tokenizer, self._eog = model.tokenizer, model.eog_token_ids
        self._context = model.context_length
        self.ids = list(ids)
        self.max_tokens = max_tokens
        self.prompt_tokens = len(ids)
        self._sample, self._max_tokens, self._logprobs = sample, max_tokens, logprobs
        self._detok = IncrementalDetokenizer(self._tokenizer.decode, ids)
        self._stops = StopMatcher(stop)
        #: Tokens generated so far; the next one goes to position ``prompt_tokens + index``.
        self.index = 0
        #: Seconds spent on the prompt and when generation started (``perf_counter``).
        self.prompt_s = 0.0
        self.gen_start = 0.0
        self.finished = False

    def step(self, logits: np.ndarray) -> GenerationStep:
        """Sample the next token from ``logits [vocab]`` and describe it."""
        if self.finished:
            raise RuntimeError("the sequence is finished")
        index, tokenizer = self.index, self._tokenizer
        lp = log_softmax(logits)
        token = self._sample(logits)
        top = tuple(
            TopLogprob(t, tokenizer.decode([t]), p) for t, p in top_logprobs(lp, self._logprobs)
        )
        finish = None
        if token in self._eog:
            finish, piece = "eos", self._detok.flush()
        else:
            piece = self._detok.push(token)
            if index == self._max_tokens - 1 or self.prompt_tokens + index + 1 >= self._context:
                finish, piece = "length", piece + self._detok.flush()
        text, stopped = self._stops.push(piece)
        if stopped:
            finish = "stop"
        elif finish is not None:
            text += self._stops.flush()
        timings = None
        if finish is not None:
            self.finished = True
            timings = Timings(self.prompt_tokens, index + 1, self.prompt_s,
                              time.perf_counter() - self.gen_start)
        self.index += 1
        return GenerationStep(index, token, text, float(lp[token]), top, finish, timings)


def _run(model: _Generator, decoder: SequenceDecoder, cancel: CancelHook) -> Iterator[GenerationStep]:
    """The one-sequence generation loop behind ``generate`` (arguments already checked)."""
    cache, ids = model.new_cache(), decoder.ids

    t0 = time.perf_counter()
    logits = None
    for start in range(0, len(ids), PROMPT_BATCH):
        if _cancelled(cancel):
            return
        logits = model.forward(ids[start : start + PROMPT_BATCH], start, cache, last_only=True)[0]
    decoder.gen_start = time.perf_counter()
    decoder.prompt_s = decoder.gen_start - t0
    assert logits is not None

    pos = len(ids)
    while True:
        step = decoder.step(logits)
        yield step
        if step.finish_reason is not None or _cancelled(cancel):
            return
        logits = model.forward([step.token_id], pos, cache)[0]
        pos += 1


def complete(
    model: _Generator,
    prompt: str | Sequence[int],
    *,
    max_tokens: int = 256,
    stop: Sequence[str] = (),
    logprobs: int | None = None,
    cancel: CancelHook = None,
    sampling: SamplingParams | None = None,
    **options: Any,
) -> Completion:
    """Run ``generate`` to the end and collect the result.

    ``logprobs`` ``None`` leaves logprobs out; an integer ``k >= 0`` returns
    each token's logprob and its ``k`` most likely alternatives.
    """
    ids = _prompt_ids(model, prompt)
    stream = generate(
        model, ids, max_tokens=max_tokens, stop=stop, logprobs=logprobs or 0, cancel=cancel,
        sampling=_sampling(sampling, options),
    )
    t0 = time.perf_counter()
    steps = list(stream)
    last = steps[-1] if steps else None
    if last is not None and last.timings is not None:
        finish, timings = last.finish_reason or "cancelled", last.timings
    else:  # cancelled: no finishing record
        elapsed = time.perf_counter() - t0
        finish, timings = "cancelled", Timings(len(ids), len(steps), elapsed, 0.0)
    return Completion(
        prompt_ids=tuple(ids),
        token_ids=tuple(s.token_id for s in steps),
        text="".join(s.text for s in steps),
        finish_reason=finish,
        timings=timings,
        logprobs=None if logprobs is None else tuple(s.logprob for s in steps),
        top_logprobs=None if logprobs is None else tuple(s.top_logprobs for s in steps),
    )
