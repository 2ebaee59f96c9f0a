"""Continuous batching: one scheduler per loaded language model, one forward step for all.

Why: decoding ``B`` sequences one after another reads every weight ``B``
times per token; one step over all of them reads it once, and the ternary
GEMM is several times faster per token than ``B`` GEMVs
(:mod:`bitnet_sdk.model.batch`).

The contract:

* **Join between steps.** :meth:`Scheduler.submit` hands over a
  :class:`Sequence`; the scheduler thread takes it in before its next step,
  up to ``max_batch_size`` sequences at once (the model cache's slots bound
  that already; the scheduler checks it too).
* **Memory first.** A sequence's KV cache is sized for its prompt plus
  ``max_tokens`` (at most the context window) and reserved, through the
  sequence's ``reserve`` hook, in the model cache's memory budget before it
  joins. When it does not fit, the sequence waits (in order) until running
  ones leave; nothing is overcommitted.
* **Chunked prefill.** Prompts are processed ``prefill_chunk`` tokens at a
  time, interleaved with the decode tokens of running sequences, at most
  ``step_tokens`` tokens per step (and always at least one prompt chunk when
  one waits), so running streams keep flowing while new prompts come in.
  When more prompts wait than sequences decode, the budget grows with their
  ratio (up to ``_BUDGET_GROWTH`` times): a burst of new users is prefilled
  in one or two large GEMM steps instead of many small ones, which is what
  their time to first token waits for, while the few running streams are
  held up once. Chunk boundaries depend only on the prompt, never on the load.
* **A burst joins together.** With nothing in the batch, the first step waits
  (at most ``_GATHER_S``) for sequences whose slots are already granted
  (``on_the_way``: they are being tokenized), so a burst of requests starts
  with one prefill step rather than a lone one that the others wait behind.
* **Groups.** Sequences of one :class:`Group` (an OpenAI request's ``n``
  choices, each submitted on its own) are held until every member has
  arrived or withdrawn, then join as one unit: batch places and KV memory
  for all of them, or none yet. So they join in one round and their prompt
  is computed once. (Should partial groups hold every place of the batch
  with nothing running, the oldest goes in as it is, so none waits forever.)
* **Shared prefill.** A sequence whose prompt an active sequence has or is
  computing (OpenAI ``n > 1``, a retried request) does not compute it again:
  it copies that prompt's part of the other's KV cache and samples from the
  same logits with its own sampler. The result is the same bits as its own
  prefill (same chunks, same arithmetic).
* **Deterministic.** Each sequence samples with its own
  :class:`~bitnet_sdk.model.generate.SequenceDecoder` (its own seed), and the
  batched step gives a sequence the same logits alone or in any batch, so its
  tokens do not depend on the company it keeps.
* **One sequence, the compiled step.** A step with a single chunk runs
  through the backend's fused forward pass (``Backend.compile_forward``,
  ``model.step``) when the model has one: a lone user gets the engine's
  single-stream speed. Its contract allows float32 rounding differences from
  the per-op path, which could change a reproducible (greedy or seeded)
  sequence's tokens when it moves between a lone and a shared step. So the
  scheduler probes the two paths once on the model (a prompt chunk and a
  decode token): bitwise equal, every lone step uses the compiled pass;
  otherwise only steps whose sequences are not reproducible do.
* **Leaving.** A finished, cancelled (``cancelled()`` true, checked before
  every step) or failed sequence leaves before the next step: its cache is
  dropped and ``on_exit`` runs in the scheduler thread (keep it short: free
  the slot and memory, hand slow work to another thread).

The thread exists only while there is work; an idle scheduler holds nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bitnet_sdk.model.batch import SeqChunk, forward_batch, fused_step_is_exact
from bitnet_sdk.model.generate import GenerationStep, SequenceDecoder
from bitnet_sdk.model.kv_cache import KVCache

__all__ = ["BatchLimits", "BatchObserver", "Group", "Scheduler", "Sequence", "kv_bytes"]

log = logging.getLogger(__name__)

#: Seconds an idle scheduler thread lingers before it exits.
_IDLE_EXIT_S = 2.0
#: Seconds between tries when waiting sequences cannot get memory.
_MEMORY_RETRY_S = 0.05
#: At most this many times ``step_tokens`` in a step when prompts wait (see the docstring).
_BUDGET_GROWTH = 4
#: Seconds an empty batch waits for sequences on their way before its first step.
_GATHER_S = 0.05


@dataclass(frozen=True)
class BatchLimits:
    """How big steps get: sequences per step, prompt tokens per chunk, tokens per step."""

    max_batch_size: int = 16
    prefill_chunk: int = 64
    step_tokens: int = 256

    def __post_init__(self) -> None:
        if min(self.max_batch_size, self.prefill_chunk, self.step_tokens) < 1:
            raise ValueError("batch limits must be positive")


class BatchObserver(Protocol):
    """Where a scheduler reports what it does (the server's Prometheus metrics)."""

    def step(self, sequences: int, tokens: int) -> None:
        """One step ran ``sequences`` chunks with ``tokens`` tokens in all."""

    def first_token(self, seconds: float) -> None:
        """A sequence's first token came ``seconds`` after it was submitted."""

    def inter_token(self, seconds: float) -> None:
        """A token came ``seconds`` after the sequence's previous one."""


def kv_bytes(model: Any, positions: int) -> int:
    """Bytes of a KV cache of ``positions`` positions for ``model`` (keys and values, float32)."""
    c = model.config
    return 2 * c.n_layers * positions * c.n_kv_heads * c.head_dim * 4


class Group:
    """Sequences that join a scheduler together or not at all (see the module docstring).

    ``size`` members are expected; the owner calls :meth:`withdraw` (from any
    thread) for each member that will never be submitted (its request failed
    or was cancelled before), so the others do not wait for it.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a group has at least one member")
        self.size = size
        self._lock = threading.Lock()
        self._withdrawn = 0
        #: Set by the scheduler holding the members: wakes it when one withdraws.
        self._wake: Callable[[], None] | None = None
        #: True once the members went into the batch queue (later arrivals join alone).
        self.released = False

    @property
    def withdrawn(self) -> int:
        with self._lock:
            return self._withdrawn

    def withdraw(self) -> None:
        """One member will never be submitted."""
        with self._lock:
            self._withdrawn += 1
            wake = self._wake
        if wake is not None:
            wake()


class Sequence:
    """One generation inside a scheduler: its prompt, decoder, cache and callbacks.

    ``on_step(step)`` receives each token as it is sampled; ``on_exit(reason,
    error)`` once, with ``reason`` ``"finished"``, ``"cancelled"`` or
    ``"error"``. ``reserve(nbytes) -> bool`` claims memory for the KV cache
    (False: not now, try again later); the sequence's owner frees it on exit.
    ``unreserve(nbytes)`` gives back a reservation before the sequence joined
    (its group could not join whole). ``group``: see :class:`Group`.
    ``reproducible``: its sampler is greedy or seeded (its tokens must not
    depend on which forward path computed its logits).
    """

    def __init__(self, ids: list[int], decoder: SequenceDecoder, max_positions: int, *,
                 on_step: Callable[[GenerationStep], None],
                 on_exit: Callable[[str, BaseException | None], None],
                 cancelled: Callable[[], bool] = lambda: False,
                 reserve: Callable[[int], bool] = lambda _n: True,
                 unreserve: Callable[[int], None] = lambda _n: None,
                 group: Group | None = None, reproducible: bool = True) -> None:
        self.ids = ids
        self.decoder = decoder
        self.max_positions = max_positions
        self.on_step, self.on_exit = on_step, on_exit
        self.cancelled, self.reserve, self.unreserve = cancelled, reserve, unreserve
        self.group, self.reproducible = group, reproducible
        #: Its cache holds positions computed by a compiled step that is not bitwise the
        #: batched one (then a reproducible sequence must not take its prompt over).
        self.inexact = False
        self.cache: KVCache | None = None
        #: Positions in the cache; the prompt is done when ``pos >= len(ids)``.
        self.pos = 0
        self.last_token = -1
        self.followers: list[Sequence] = []
        #: Logits after the prompt, kept while the sequence runs for others with its prompt.
        self.prompt_logits: np.ndarray | None = None
        self.submitted = self.last_at = 0.0
        self.done = False

    @property
    def prefilling(self) -> bool:
        return self.pos < len(self.ids)


class Scheduler:
    """Runs every sequence of one loaded model in shared steps (see the module docstring)."""

    def __init__(self, model: Any, limits: BatchLimits, *, name: str = "",
                 observer: BatchObserver | None = None,
                 on_the_way: Callable[[], int] | None = None) -> None:
        """``on_the_way()``: how many sequences will be submitted soon, counting the ones
        in the scheduler (the model cache's granted slots); None: unknown."""
        self.model = model
        self._on_the_way = on_the_way
        self.limits = limits
        self.name = name
        self.observer = observer
        self._cond = threading.Condition()
        self._incoming: list[Sequence] = []
        self._gathering: dict[Group, list[Sequence]] = {}  # groups waiting for members
        self._waiting: deque[list[Sequence]] = deque()  # units in order, waiting for memory
        self._active: list[Sequence] = []  # leaders in the batch (followers ride on them)
        self._thread: threading.Thread | None = None
        self._stopped = False
        #: Whether the model's compiled step matches the batched one bitwise (probed once).
        self._fused_exact: bool | None = None
        #: Steps run through the compiled forward pass (one sequence each).
        self.fused_steps = 0

    # -- the public side -----------------------------------------------------------------

    def submit(self, *seqs: Sequence) -> None:
        """Queue sequences for the next step (thread-safe); starts the thread if idle.

        Sequences submitted in one call join in the same round (so ones with the
        same prompt share its prefill).
        """
        now = time.perf_counter()
        for seq in seqs:
            seq.submitted = now
        with self._cond:
            if self._stopped:
                raise RuntimeError("the scheduler is stopped")
            self._incoming.extend(seqs)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name=f"bitnet-batch-{self.name}")
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        """Cancel every sequence (they exit ``cancelled``) and refuse new ones."""
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def counts(self) -> tuple[int, int]:
        """``(active, waiting)``: sequences in the batch (followers included) and not yet in."""
        with self._cond:  # the scheduler thread changes the lists: count copies
            active = sum(1 + len(list(s.followers)) for s in list(self._active))
            held = sum(len(u) for u in [*list(self._waiting), *list(self._gathering.values())])
            return active, held + len(self._incoming)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # -- the thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while self._next_round():
            try:
                if not self._active:
                    self._gather()
                self._admit()
                self._drop_cancelled()
                chunks = self._plan()
                if chunks:
                    self._step(chunks)
                elif self._waiting:
                    time.sleep(_MEMORY_RETRY_S)
            except Exception as exc:  # a bug, not a request's fault: fail what runs, go on
                log.exception("batch step failed", extra={"model_id": self.name})
                for seq in list(self._active):
                    self._exit(seq, "error", exc)

    def _next_round(self) -> bool:
        """Take in new sequences; False when the thread should end (idle or stopped)."""
        with self._cond:
            while not (self._incoming or self._waiting or self._active or self._stopped):
                if self._gathering:  # a member may withdraw or be cancelled: look again soon
                    self._cond.wait(_MEMORY_RETRY_S)
                    break
                if not self._cond.wait(_IDLE_EXIT_S) and not self._incoming:
                    self._thread = None
                    return False
            self._take_incoming()
            if self._stopped:
                self._thread = None
        if self._stopped:
            held = [s for u in [*self._waiting, *self._gathering.values()] for s in u]
            for seq in [*held, *self._active]:
                self._exit(seq, "cancelled", None)
            self._waiting.clear()
            self._gathering.clear()
            return False
        self._release_groups()
        return True

    def _gather(self) -> None:
        """An empty batch waits briefly for the sequences on their way (see the docstring)."""
        if self._on_the_way is None or not (self._waiting or self._gathering):
            return
        deadline = time.perf_counter() + _GATHER_S
        while not self._stopped:
            with self._cond:
                self._take_incoming()
                here = sum(len(u) for u in [*self._waiting, *self._gathering.values()])
                left = deadline - time.perf_counter()
                if here >= self._on_the_way() or left <= 0:
                    break
                self._cond.wait(left)
        self._release_groups()

    def _take_incoming(self) -> None:
        """(Holding the lock.) Submitted sequences into the queue, or to their group."""
        for seq in self._incoming:
            group = seq.group
            if group is None or group.released:
                self._waiting.append([seq])
            else:
                group._wake = self._wake
                self._gathering.setdefault(group, []).append(seq)
        self._incoming.clear()

    def _release_groups(self) -> None:
        """Groups whose members are all here (or withdrew) go into the queue as units."""
        for group, members in list(self._gathering.items()):
            if len(members) + group.withdrawn >= group.size:
                self._queue_unit(group, members)
        if self._gathering and not (self._active or self._waiting):
            held = sum(len(m) for m in self._gathering.values())
            if held >= self.limits.max_batch_size:  # partial groups hold every place
                group = next(iter(self._gathering))
                self._queue_unit(group, self._gathering[group])

    def _queue_unit(self, group: Group, members: list[Sequence]) -> None:
        del self._gathering[group]
        group.released = True
        size = self.limits.max_batch_size
        self._waiting.extend(members[i:i + size] for i in range(0, len(members), size))

    def _admit(self) -> None:
        """Move waiting units into the batch, in order, while places and memory allow."""
        while self._waiting:
            unit = self._waiting[0]
            for seq in [s for s in unit if s.cancelled()]:
                unit.remove(seq)
                self._exit(seq, "cancelled", None)
            active, _ = self.counts()
            if unit and active + len(unit) > self.limits.max_batch_size:
                break
            if not self._reserve(unit):
                break
            self._waiting.popleft()
            for seq in unit:
                seq.cache = self.model.new_cache(seq.max_positions)
                self._join(seq)

    def _reserve(self, unit: list[Sequence]) -> bool:
        """KV memory for every member of ``unit``, or for none (False: try again later).

        A member that can never fit leaves ``unit`` with an error; the others go on.
        """
        reserved: list[Sequence] = []
        for seq in list(unit):
            try:
                fits = seq.reserve(kv_bytes(self.model, seq.max_positions))
            except Exception as exc:  # can never fit: refuse this one, keep the others
                unit.remove(seq)
                self._exit(seq, "error", exc)
                continue
            if not fits:
                for done in reserved:
                    done.unreserve(kv_bytes(self.model, done.max_positions))
                return False
            reserved.append(seq)
        return True

    def _join(self, seq: Sequence) -> None:
        """Into the batch; a prompt some active sequence has (or is computing) is not redone."""
        for other in self._active:
            if other.ids != seq.ids or (other.inexact and seq.reproducible):
                continue
            if other.prefilling:  # fork when its prompt is done
                other.followers.append(seq)
                return
            if other.prompt_logits is not None and other.cache is not None:
                assert seq.cache is not None
                seq.cache.copy_from(other.cache, len(seq.ids))
                seq.inexact = other.inexact
                seq.pos = len(seq.ids)
                self._emit(seq, other.prompt_logits, prompt_done=True)
                if not seq.done:
                    self._active.append(seq)
                return
        self._active.append(seq)

    def _drop_cancelled(self) -> None:
        for unit in self._waiting:
            for seq in [s for s in unit if s.cancelled()]:
                unit.remove(seq)
                self._exit(seq, "cancelled", None)
        for group, members in list(self._gathering.items()):
            for seq in [s for s in members if s.cancelled()]:
                members.remove(seq)
                self._exit(seq, "cancelled", None)
                group.withdraw()
        for seq in list(self._active):
            for follower in [f for f in seq.followers if f.cancelled()]:
                seq.followers.remove(follower)
                self._exit(follower, "cancelled", None)
            if seq.cancelled():
                self._exit(seq, "cancelled", None)

    def _plan(self) -> list[tuple[Sequence, SeqChunk]]:
        """This step's chunks: every decode token, then prompt chunks within the token budget."""
        plan = [(s, SeqChunk(np.array([s.last_token]), s.pos, s.cache))
                for s in self._active if not s.prefilling and s.cache is not None]
        tokens, chunk = len(plan), self.limits.prefill_chunk
        prefilling = sum(1 for s in self._active if s.prefilling and s.cache is not None)
        growth = min(_BUDGET_GROWTH, max(1, -(-prefilling // max(1, tokens))))
        budget = self.limits.step_tokens * growth
        prompts = False
        for s in self._active:
            if not s.prefilling or s.cache is None:
                continue
            end = min(len(s.ids), (s.pos // chunk + 1) * chunk)  # boundaries depend on the prompt only
            if prompts and tokens + end - s.pos > budget:
                break
            plan.append((s, SeqChunk(np.array(s.ids[s.pos:end]), s.pos, s.cache,
                                     logits=end == len(s.ids))))
            tokens += end - s.pos
            prompts = True
        return plan

    def _fused(self, plan: list[tuple[Sequence, SeqChunk]]) -> bool:
        """Whether this step runs through the compiled forward pass (see the module docstring)."""
        if len(plan) != 1 or getattr(self.model, "step", None) is None:
            return False
        if self._fused_exact is None:
            self._fused_exact = fused_step_is_exact(self.model)
            if not self._fused_exact:
                log.info("the compiled forward step differs from the batched one in the last "
                         "bits: reproducible sequences use the batched step",
                         extra={"model_id": self.name})
        seq = plan[0][0]
        return self._fused_exact or not any(s.reproducible for s in [seq, *seq.followers])

    def _step(self, plan: list[tuple[Sequence, SeqChunk]]) -> None:
        m = self.model
        if self._fused(plan):
            chunk = plan[0][1]
            row = m.step(chunk.token_ids, chunk.start_pos, chunk.cache, True)[0]
            logits: list[np.ndarray | None] = [row if chunk.logits else None]
            self.fused_steps += 1
            plan[0][0].inexact |= not self._fused_exact
        else:
            logits = forward_batch(m.weights, m.config, m.backend, [c for _, c in plan])
        if self.observer is not None:
            self.observer.step(len(plan), sum(c.token_ids.shape[0] for _, c in plan))
        for (seq, chunk), row in zip(plan, logits, strict=True):
            seq.pos += chunk.token_ids.shape[0]
            if row is None:
                continue
            if seq.decoder.index == 0:  # the prompt is done: followers fork here
                for follower in seq.followers:
                    assert follower.cache is not None and seq.cache is not None
                    follower.cache.copy_from(seq.cache)
                    follower.pos, follower.inexact = seq.pos, seq.inexact
                    self._emit(follower, row, prompt_done=True)
                    if not follower.done:
                        self._active.append(follower)
                seq.followers.clear()
                self._emit(seq, row, prompt_done=True)
            else:
                self._emit(seq, row)

    def _emit(self, seq: Sequence, logits: np.ndarray, *, prompt_done: bool = False) -> None:
        now = time.perf_counter()
        if prompt_done:
            seq.decoder.prompt_s, seq.decoder.gen_start = now - seq.submitted, now
            seq.prompt_logits = logits
        step = seq.decoder.step(logits)
        seq.last_token = step.token_id
        if self.observer is not None:
            if step.index == 0:
                self.observer.first_token(now - seq.submitted)
            else:
                self.observer.inter_token(now - seq.last_at)
        seq.last_at = now
        seq.on_step(step)
        if step.finish_reason is not None:
            self._exit(seq, "finished", None)

    def _exit(self, seq: Sequence, reason: str, error: BaseException | None) -> None:
        """``seq`` leaves now: out of the batch, cache dropped, ``on_exit`` called."""
        if seq.done:
            return
        seq.done = True
        if seq in self._active:
            self._active.remove(seq)
            if seq.followers and reason == "cancelled":  # the first follower takes over
                heir = seq.followers.pop(0)
                assert heir.cache is not None and seq.cache is not None
                heir.cache.copy_from(seq.cache)
                heir.pos, heir.followers, heir.inexact = seq.pos, seq.followers, seq.inexact
                self._active.append(heir)
            else:
                for follower in seq.followers:
                    self._exit(follower, reason, error)
            seq.followers = []
        seq.cache = seq.prompt_logits = None
        try:
            seq.on_exit(reason, error)
        except Exception:
            log.exception("a sequence's exit hook failed", extra={"model_id": self.name})
