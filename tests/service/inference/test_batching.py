"""The batching scheduler on real (small) models: determinism, leaving, shared prefill, memory.

Each test drives a :class:`Scheduler` directly with real sequences and waits for
their exits; nothing about the model is mocked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bitnet_sdk.backends import available
from bitnet_sdk.model.generate import GenerationStep, new_decoder
from bitnet_sdk.model.loader import Model, load
from bitnet_sdk.service.inference.batching import (
    BatchLimits,
    Group,
    Scheduler,
    Sequence,
    kv_bytes,
)
from bitnet_sdk.service.inference.model_cache import (
    ModelCache,
    ModelRef,
    ModelSpec,
    ModelTooLarge,
)
from bitnet_sdk.testing.synthetic import build_model
from tests.support.inference import ModelFiles

BACKENDS = sorted(i.name for i in available() if i.available)
PROMPTS = ["Hello there", "The quick brown fox", "def main(argv):", "x = y + z",
           "print('hello, world!')", "{a: [1, 2, 3]}", "Code:", "Hello, world"]


@pytest.fixture(scope="module")
def endless_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ModelFiles(tmp_path_factory.mktemp("batching")).endless()


@pytest.fixture(scope="module", params=BACKENDS)
def model(request: pytest.FixtureRequest, endless_file: Path) -> Model:
    return load(endless_file, backend=request.param)


class Run:
    """One sequence's record: its steps and how it left."""

    def __init__(self, model: Model, prompt: str, *, cancel_after: int | None = None,
                 reserve: Callable[[int], bool] = lambda _n: True, group: Group | None = None,
                 **params: Any) -> None:
        self.decoder = new_decoder(model, prompt, **params)
        self.steps: list[GenerationStep] = []
        self.exit: tuple[str, BaseException | None] | None = None
        self.left = threading.Event()
        self.cancel_after = cancel_after
        self.seq = Sequence(self.decoder.ids, self.decoder,
                            min(model.context_length, len(self.decoder.ids) + params["max_tokens"]),
                            on_step=self.steps.append, on_exit=self._exit,
                            cancelled=self._cancelled, reserve=reserve, group=group)

    def _cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.steps) >= self.cancel_after

    def _exit(self, reason: str, error: BaseException | None) -> None:
        self.exit = (reason, error)
        self.left.set()

    @property
    def tokens(self) -> list[int]:
        return [s.token_id for s in self.steps]


def run_all(scheduler: Scheduler, runs: list[Run]) -> list[Run]:
    for r in runs:
        scheduler.submit(r.seq)
    for r in runs:
        assert r.left.wait(120), "a sequence never left the scheduler"
    return runs


class Steps:
    """A BatchObserver that records every step."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.first: list[float] = []
        self.gaps: list[float] = []

    def step(self, sequences: int, tokens: int) -> None:
        self.sizes.append((sequences, tokens))

    def first_token(self, seconds: float) -> None:
        self.first.append(seconds)

    def inter_token(self, seconds: float) -> None:
        self.gaps.append(seconds)


def params(i: int) -> dict[str, Any]:
    """Request ``i``'s sampling: every other one greedy, the rest seeded with filters."""
    if i % 2 == 0:
        return {"max_tokens": 12, "temperature": 0.0}
    return {"max_tokens": 12, "temperature": 0.9, "top_k": 40 if i % 3 else 0,
            "top_p": 0.9 if i % 5 else 1.0, "seed": 1000 + i}


def test_tokens_are_the_same_alone_and_in_a_batch_of_16(model: Model) -> None:
    requests = [(PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)), params(i))
                for i in range(16)]
    steps = Steps()
    scheduler = Scheduler(model, BatchLimits(max_batch_size=16, prefill_chunk=4,
                                             step_tokens=32), observer=steps)
    alone = [run_all(scheduler, [Run(model, p, **kw)])[0].tokens for p, kw in requests]
    assert max(size for size, _ in steps.sizes) == 1
    # Alone, a sequence runs through the backend's compiled step when it has one.
    assert scheduler.fused_steps == (len(steps.sizes) if model.step is not None else 0)
    steps.sizes.clear()
    steps.first.clear()
    steps.gaps.clear()
    together = run_all(scheduler, [Run(model, p, **kw) for p, kw in requests])
    assert max(size for size, _ in steps.sizes) == 16  # they really shared steps
    for i, r in enumerate(together):
        assert r.exit == ("finished", None)
        assert r.tokens == alone[i], f"request {i} changed in the batch"
    # And what the one-sequence runtime gives (prompt chunks of 4 tokens there, 512 here).
    for (prompt, kw), tokens in zip(requests[:4], alone[:4], strict=True):
        assert list(model.complete(prompt, **kw).token_ids) == tokens
    assert scheduler.counts() == (0, 0)
    assert len(steps.first) == 16 and len(steps.gaps) == 16 * 11


def test_cancelled_sequences_leave_at_once_and_the_rest_go_on(model: Model) -> None:
    scheduler = Scheduler(model, BatchLimits(max_batch_size=8))
    runs = [Run(model, PROMPTS[i], max_tokens=20, temperature=0.0,
                cancel_after=3 if i % 2 else None) for i in range(6)]
    run_all(scheduler, runs)
    for i, r in enumerate(runs):
        if i % 2:
            assert r.exit == ("cancelled", None) and len(r.tokens) == 3
            assert r.seq.cache is None  # freed when it left
        else:
            assert r.exit == ("finished", None) and len(r.tokens) == 20
    assert scheduler.counts() == (0, 0)


def test_a_sequence_cancelled_while_waiting_never_runs(model: Model) -> None:
    scheduler = Scheduler(model, BatchLimits(max_batch_size=1))
    first = Run(model, PROMPTS[0], max_tokens=30, temperature=0.0)
    waiting = Run(model, PROMPTS[1], max_tokens=30, temperature=0.0, cancel_after=0)
    run_all(scheduler, [first, waiting])
    assert waiting.exit == ("cancelled", None) and waiting.steps == []
    assert first.exit == ("finished", None)


def test_the_same_prompt_arriving_together_is_computed_once(model: Model) -> None:
    steps = Steps()
    scheduler = Scheduler(model, BatchLimits(prefill_chunk=4), observer=steps)
    prompt = PROMPTS[1] * 3
    alone = [run_all(scheduler, [Run(model, prompt, **params(i))])[0].tokens for i in range(4)]
    steps.sizes.clear()
    runs = [Run(model, prompt, **params(i)) for i in range(4)]
    scheduler.submit(*(r.seq for r in runs))
    run_all(scheduler, [])
    for r in runs:
        assert r.left.wait(120)
    prompt_tokens = len(runs[0].decoder.ids)
    decode_tokens = sum(len(r.tokens) - 1 for r in runs)  # the first comes from the prompt
    assert sum(tokens for _, tokens in steps.sizes) == prompt_tokens + decode_tokens
    assert [r.tokens for r in runs] == alone
    assert len(set(map(tuple, alone))) > 1  # different seeds: really different sequences


def test_a_leader_cancelled_during_prefill_hands_the_prompt_on(model: Model) -> None:
    steps = Steps()
    scheduler = Scheduler(model, BatchLimits(prefill_chunk=2, step_tokens=2), observer=steps)
    prompt = PROMPTS[4] * 2
    expected = run_all(scheduler, [Run(model, prompt, **params(1))])[0].tokens
    steps.sizes.clear()
    leader = Run(model, prompt, max_tokens=5, temperature=0.0)
    follower = Run(model, prompt, **params(1))
    leader.seq.cancelled = lambda: leader.seq.pos >= 2  # after its first prompt chunk
    scheduler.submit(leader.seq, follower.seq)
    assert leader.left.wait(60) and follower.left.wait(60)
    assert leader.exit == ("cancelled", None) and leader.steps == []
    assert follower.tokens == expected
    # The follower went on from the leader's chunk: the prompt was computed once.
    prompt_tokens = len(follower.decoder.ids)
    assert sum(t for _, t in steps.sizes) == prompt_tokens + len(expected) - 1


def test_admission_waits_for_memory_instead_of_overcommitting(model: Model) -> None:
    per_sequence = kv_bytes(model, 16)
    budget = {"free": 2 * per_sequence}
    lock = threading.Lock()

    def reserve(nbytes: int) -> bool:
        with lock:
            if nbytes > budget["free"]:
                return False
            budget["free"] -= nbytes
            return True

    steps = Steps()
    scheduler = Scheduler(model, BatchLimits(max_batch_size=16), observer=steps)
    runs: list[Run] = []

    def give_back(run: Run) -> Callable[[str, BaseException | None], None]:
        def on_exit(reason: str, error: BaseException | None) -> None:
            with lock:
                budget["free"] += kv_bytes(model, run.seq.max_positions)
            Run._exit(run, reason, error)
        return on_exit

    for _ in range(5):
        run = Run(model, "Hi", reserve=reserve, max_tokens=16 - len(model.tokenize("Hi")),
                  temperature=0.0)
        assert kv_bytes(model, run.seq.max_positions) == per_sequence
        run.seq.on_exit = give_back(run)
        runs.append(run)
    run_all(scheduler, runs)
    assert all(r.exit == ("finished", None) for r in runs)
    assert max(size for size, _ in steps.sizes) == 2  # never more than the memory holds
    assert budget["free"] == 2 * per_sequence


def test_a_sequence_that_can_never_fit_fails_alone(model: Model) -> None:
    def too_big(nbytes: int) -> bool:
        raise ModelTooLarge("no room")

    scheduler = Scheduler(model, BatchLimits())
    bad = Run(model, PROMPTS[0], reserve=too_big, max_tokens=4, temperature=0.0)
    good = Run(model, PROMPTS[1], max_tokens=4, temperature=0.0)
    run_all(scheduler, [bad, good])
    assert bad.exit is not None and bad.exit[0] == "error"
    assert isinstance(bad.exit[1], ModelTooLarge)
    assert good.exit == ("finished", None) and len(good.tokens) == 4


def test_kv_reservations_count_in_the_cache_budget(tmp_path: Path) -> None:
    path = build_model(tmp_path / "m.gguf")
    model_bytes = path.stat().st_size
    cache = ModelCache(model_bytes + 3000, 4, slots_per_model=4)
    spec = ModelSpec(ModelRef("m", "m", "llm", path, model_bytes, 1), "numpy")
    try:
        first = cache.acquire_sync(spec)
        second = cache.acquire_sync(spec)
        used = cache.stats()["used_bytes"]
        assert first.reserve(2000) and cache.stats()["used_bytes"] == used + 2000
        assert not second.reserve(2000)  # waits: the budget is spoken for
        with pytest.raises(ModelTooLarge):
            second.reserve(10**9)  # can never fit
        first.unreserve(2000)  # given back before its sequence joined (its group waits)
        assert cache.stats()["used_bytes"] == used and second.reserve(2000)
        assert first.reserve(1000) and not first.reserve(2000)
        first.release()
        second.release()
        assert cache.stats()["used_bytes"] == used
    finally:
        cache.stop()


def test_a_late_request_reuses_the_prompt_of_a_running_one(model: Model) -> None:
    steps = Steps()
    scheduler = Scheduler(model, BatchLimits(prefill_chunk=4), observer=steps)
    prompt = PROMPTS[2] * 2
    expected = run_all(scheduler, [Run(model, prompt, **params(3))])[0].tokens
    steps.sizes.clear()
    first = Run(model, prompt, max_tokens=200, temperature=0.0)
    first.seq.cancelled = lambda: late.left.is_set()  # runs until the late one is done
    late = Run(model, prompt, **params(3))
    scheduler.submit(first.seq)
    while len(first.steps) < 2:
        assert not first.left.wait(0.01)
    scheduler.submit(late.seq)
    assert late.left.wait(60) and first.left.wait(60)
    assert late.tokens == expected
    computed = sum(t for _, t in steps.sizes)
    assert computed == len(first.decoder.ids) + len(first.tokens) - 1 + len(late.tokens) - 1


def test_a_group_joins_whole_and_computes_its_prompt_once(model: Model) -> None:
    """Choices that arrive one by one, after a sibling could have finished, still share
    one prefill: the group is held until every member is there (or withdrew)."""
    steps = Steps()
    scheduler = Scheduler(model, BatchLimits(prefill_chunk=4), observer=steps)
    prompt = PROMPTS[3] * 2
    alone = [run_all(scheduler, [Run(model, prompt, **params(i))])[0].tokens for i in range(3)]
    steps.sizes.clear()
    group = Group(4)
    runs = [Run(model, prompt, group=group, **params(i)) for i in range(3)]
    scheduler.submit(runs[0].seq)
    assert not runs[0].left.wait(0.3)  # held: its siblings are not there yet
    assert scheduler.counts() == (0, 1) and steps.sizes == []
    scheduler.submit(runs[1].seq)
    scheduler.submit(runs[2].seq)
    group.withdraw()  # the fourth choice failed before it reached the scheduler
    for r in runs:
        assert r.left.wait(120) and r.exit == ("finished", None)
    assert [r.tokens for r in runs] == alone
    decode_tokens = sum(len(r.tokens) - 1 for r in runs)
    assert sum(t for _, t in steps.sizes) == len(runs[0].decoder.ids) + decode_tokens


def test_a_group_gets_memory_for_all_members_or_waits(model: Model) -> None:
    per_sequence = kv_bytes(model, 16)
    budget = {"free": 3 * per_sequence, "low": 3 * per_sequence}
    lock = threading.Lock()

    def reserve(nbytes: int) -> bool:
        with lock:
            if nbytes > budget["free"]:
                return False
            budget["free"] -= nbytes
            budget["low"] = min(budget["low"], budget["free"])
            return True

    def unreserve(nbytes: int) -> None:
        with lock:
            budget["free"] += nbytes

    def giving_back(run: Run) -> Callable[[str, BaseException | None], None]:
        def on_exit(reason: str, error: BaseException | None) -> None:
            unreserve(kv_bytes(model, run.seq.max_positions))
            Run._exit(run, reason, error)
        return on_exit

    steps = Steps()
    scheduler = Scheduler(model, BatchLimits(max_batch_size=16), observer=steps)
    first = Run(model, "Hi", reserve=reserve, max_tokens=16 - len(model.tokenize("Hi")),
                temperature=0.0)
    group = Group(3)
    members = [Run(model, "Yo", reserve=reserve, group=group,
                   max_tokens=16 - len(model.tokenize("Yo")), temperature=0.0)
               for _ in range(3)]
    for run in [first, *members]:
        assert kv_bytes(model, run.seq.max_positions) == per_sequence
        run.seq.unreserve = unreserve
        run.seq.on_exit = giving_back(run)
    run_all(scheduler, [first, *members])
    assert all(r.exit == ("finished", None) for r in [first, *members])
    # Two members would have fit beside the first; the group waited to join whole, so
    # its prompt was computed once (not once for two members and again for the third).
    decode_tokens = sum(len(r.tokens) - 1 for r in [first, *members])
    prompts = len(first.decoder.ids) + len(members[0].decoder.ids)
    assert sum(t for _, t in steps.sizes) == prompts + decode_tokens
    assert budget["free"] == 3 * per_sequence and budget["low"] == 0


def test_partial_groups_that_hold_every_place_go_in_as_they_are(model: Model) -> None:
    scheduler = Scheduler(model, BatchLimits(max_batch_size=2))
    groups = [Group(3), Group(3)]
    runs = [Run(model, PROMPTS[i], group=groups[i], max_tokens=4, temperature=0.0)
            for i in range(2)]
    scheduler.submit(runs[0].seq)
    scheduler.submit(runs[1].seq)
    # No other member can come (each would need a place): the oldest group goes in.
    assert runs[0].left.wait(120) and runs[0].exit == ("finished", None)
    assert not runs[1].left.is_set()  # a place is free again: the second group waits on
    groups[1].withdraw()
    groups[1].withdraw()
    assert runs[1].left.wait(120) and runs[1].exit == ("finished", None)


def test_a_group_member_cancelled_while_gathering_leaves(model: Model) -> None:
    scheduler = Scheduler(model, BatchLimits())
    group = Group(3)
    stays = Run(model, PROMPTS[0], group=group, max_tokens=4, temperature=0.0)
    goes = Run(model, PROMPTS[0], group=group, max_tokens=4, temperature=0.0, cancel_after=0)
    scheduler.submit(stays.seq, goes.seq)
    assert goes.left.wait(60) and goes.exit == ("cancelled", None)
    assert not stays.left.is_set()
    group.withdraw()
    assert stays.left.wait(60) and stays.exit == ("finished", None)



def test_a_compiled_step_that_differs_in_the_last_bits_serves_only_random_sequences(
        model: Model) -> None:
    """A backend's compiled step may round differently (its contract allows it): then a
    greedy or seeded sequence never uses it, so its tokens stay the same alone and batched."""
    import copy

    import numpy as np

    from bitnet_sdk.model.batch import fused_step_is_exact

    def off_by_one_bit(ids: np.ndarray, pos: int, cache: Any, last_only: bool) -> np.ndarray:
        logits = model.forward(ids, pos, cache, last_only=last_only)
        return np.nextafter(logits, np.float32(np.inf))

    rounding = copy.copy(model)
    rounding.step = off_by_one_bit
    assert not fused_step_is_exact(rounding)
    assert fused_step_is_exact(model) == (model.step is not None)
    scheduler = Scheduler(rounding, BatchLimits(prefill_chunk=4))
    greedy = [run_all(scheduler, [Run(rounding, p, max_tokens=6, temperature=0.0)])[0].tokens
              for p in PROMPTS[:3]]
    assert scheduler.fused_steps == 0
    together = run_all(scheduler, [Run(rounding, p, max_tokens=6, temperature=0.0)
                                   for p in PROMPTS[:3]])
    assert [r.tokens for r in together] == greedy
    unseeded = Run(rounding, PROMPTS[0], max_tokens=6, temperature=0.8)
    unseeded.seq.reproducible = False
    run_all(scheduler, [unseeded])
    assert unseeded.exit == ("finished", None) and scheduler.fused_steps > 0
    # A greedy request does not take over a prompt the inexact step computed.
    steps = Steps()
    scheduler.observer = steps
    running = Run(rounding, PROMPTS[0], max_tokens=200, temperature=0.8)
    running.seq.reproducible = False
    late = Run(rounding, PROMPTS[0], max_tokens=6, temperature=0.0)
    running.seq.cancelled = lambda: late.left.is_set()
    scheduler.submit(running.seq)
    while len(running.steps) < 2:
        assert not running.left.wait(0.01)
    scheduler.submit(late.seq)
    assert late.left.wait(120) and running.left.wait(120)
    assert late.tokens == greedy[0]
    computed = sum(t for _, t in steps.sizes)
    assert computed == 2 * len(late.decoder.ids) + len(running.tokens) - 1 + len(late.tokens) - 1


def test_a_burst_of_prompts_gets_a_larger_step_budget(model: Model) -> None:
    """More prompts waiting than sequences decoding: the step budget grows with the
    ratio (at most 4 times), so a burst is prefilled in few steps; never past that."""
    steps = Steps()
    limits = BatchLimits(max_batch_size=16, prefill_chunk=4, step_tokens=8)
    scheduler = Scheduler(model, limits, observer=steps)
    runs = [Run(model, PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)), max_tokens=3,
                temperature=0.0) for i in range(12)]
    scheduler.submit(*(r.seq for r in runs))
    for r in runs:
        assert r.left.wait(120) and r.exit == ("finished", None)
    assert max(t for _, t in steps.sizes) > limits.step_tokens  # grew for the burst
    assert all(t <= 4 * limits.step_tokens + limits.prefill_chunk for _, t in steps.sizes)


def test_an_empty_batch_waits_for_the_sequences_on_their_way(model: Model) -> None:
    """The model cache says three slots are granted: the first step waits for all three
    (here the other two are submitted while the scheduler asks), one prefill step for all."""
    steps = Steps()
    runs = [Run(model, PROMPTS[i], max_tokens=3, temperature=0.0) for i in range(3)]
    asked: list[int] = []

    def on_the_way() -> int:
        if not asked:  # the other two arrive while the first waits
            scheduler.submit(runs[1].seq, runs[2].seq)
        asked.append(1)
        return 3

    scheduler = Scheduler(model, BatchLimits(), observer=steps, on_the_way=on_the_way)
    scheduler.submit(runs[0].seq)
    for r in runs:
        assert r.left.wait(120) and r.exit == ("finished", None)
    assert steps.sizes[0] == (3, sum(len(r.decoder.ids) for r in runs))
