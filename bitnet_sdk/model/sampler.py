"""Token sampling: a factory that returns the function picking the next token.

:class:`SamplingParams` holds the settings (checked once, when built) and
``make_sampler`` returns ``sample(logits) -> token id`` for them. Greedy decoding (``temperature == 0``) is a plain argmax and
ignores the seed. Otherwise the filters run in llama.cpp's default order —
top-k, then top-p (nucleus) over the temperature-scaled distribution — and one
token is drawn from what is left. The random stream comes from
``numpy.random.default_rng(seed)`` owned by the returned function, so the same
seed and the same logits give the same tokens; a ``None`` seed draws fresh
entropy.

Log-probabilities reported to users (``log_softmax``, ``top_logprobs``) are
those of the model's own distribution, before temperature and filtering, as
OpenAI's API reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = ["Sampler", "SamplingParams", "log_softmax", "make_sampler", "top_logprobs"]

#: ``sample(logits [vocab] float32) -> token id``.
Sampler = Callable[[np.ndarray], int]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of a ``[vocab]`` logit vector, in float64 for stable sums."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - np.max(x)
    return shifted - np.log(np.sum(np.exp(shifted)))


def top_logprobs(logprobs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` most likely tokens as ``(token id, logprob)``, most likely first.

    Ties are broken by the lower token id, so the result does not depend on
    the partition algorithm.
    """
    if k <= 0:
        return []
    k = min(k, logprobs.shape[0])
    candidates = np.argpartition(-logprobs, k - 1)[:k]
    order = np.lexsort((candidates, -logprobs[candidates]))
    return [(int(candidates[i]), float(logprobs[candidates[i]])) for i in order]


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is drawn: the one list of sampler options.

    Each field is, under the same name, a keyword of ``generate``/``complete``, a field of the
    native ``InferenceRequest`` and (where OpenAI has it) of the OpenAI requests: the service
    layer reads them from requests by these names. The defaults are the runtime's (greedy).

    ``temperature`` 0 means greedy (argmax, lowest id on ties); ``top_k`` 0 disables the
    top-k filter; ``top_p`` 1.0 disables the nucleus filter, which keeps the smallest set of
    most likely tokens whose probability reaches ``top_p`` (always at least one token);
    ``seed`` None draws fresh entropy. Bad values raise ``ValueError`` here.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (self.temperature >= 0.0 and np.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def reproducible(self) -> bool:
        """Whether the same logits always give the same tokens (greedy, or a seed)."""
        return self.temperature == 0.0 or self.seed is not None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SamplingParams:
        """The options ``values`` (a request) sets; other keys are ignored, None means default."""
        return cls(**{k: values[k] for k in cls.names() if values.get(k) is not None})


def make_sampler(params: SamplingParams | None = None, /, **options: Any) -> Sampler:
    """Build ``sample(logits) -> token id`` for ``params``, or for ``SamplingParams(**options)``."""
    p = SamplingParams(**options) if params is None else params
    temperature, top_k, top_p = p.temperature, p.top_k, p.top_p
    if temperature == 0.0:
        return _greedy

    rng = np.random.default_rng(p.seed)
    inv_temp = 1.0 / temperature

    def sample(logits: np.ndarray) -> int:
        x = np.asarray(logits, dtype=np.float64).reshape(-1)
        if 0 < top_k < x.shape[0]:
            ids = np.argpartition(-x, top_k - 1)[:top_k]
            ids = ids[np.lexsort((ids, -x[ids]))]  # most likely first, lower id on ties
        elif top_p < 1.0:
            ids = np.argsort(-x, kind="stable")
        else:  # no filter: draw from the whole vocabulary, no sort needed
            ids = np.arange(x.shape[0])
        z = x[ids] * inv_temp
        p = np.exp(z - np.max(z))
        p /= p.sum()
        if top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(p), top_p)) + 1
            ids, p = ids[:keep], p[:keep] / p[:keep].sum()
        return int(ids[rng.choice(p.shape[0], p=p)])

    return sample


def _greedy(logits: np.ndarray) -> int:
    return int(np.argmax(logits))
