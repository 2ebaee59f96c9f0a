"""ModelCache: one load per model, bounded fair queues, LRU eviction under a budget,
deadlines, cancellation, and the thread API. The loader is a stand-in that counts loads
(the real one is exercised through the live server in tests/api/test_inference.py)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bitnet_sdk.service.inference.model_cache import (
    CacheBusy,
    CacheStopped,
    ModelCache,
    ModelRef,
    ModelSpec,
    ModelTooLarge,
    QueueFull,
    WaitCancelled,
    WaitTimeout,
)

T = TypeVar("T")


class Loads:
    """A loader that records every load and can be held until released."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.count: Counter[str] = Counter()
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail = fail or set()

    def __call__(self, spec: ModelSpec) -> object:
        self.count[spec.model_id] += 1
        self.started.set()
        assert self.gate.wait(10)
        if spec.model_id in self.fail:
            raise ValueError(f"{spec.model_id} is not a model")
        return {"model": spec.model_id, "version": spec.version}


def spec(model_id: str, size: int = 100, version: str = "v1") -> ModelSpec:
    model = ModelRef(model_id, f"name-{model_id}", "llm", Path(f"/models/{model_id}.gguf"), size,
                     0, version)
    return ModelSpec(model, "numpy")


def run(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro())


@pytest.fixture
def loads() -> Loads:
    return Loads()


def make(loads: Loads, *, budget: int = 1000, queue: int = 4, slots: int = 1) -> ModelCache:
    return ModelCache(budget, queue, slots_per_model=slots, loader=loads, compute_threads=4)


def test_concurrent_requests_share_one_load(loads: Loads) -> None:
    cache = make(loads, queue=16, slots=4)
    loads.gate.clear()

    async def main() -> list[object]:
        tasks = [asyncio.ensure_future(cache.acquire(spec("a"), user=f"u{i}")) for i in range(10)]
        await asyncio.to_thread(loads.started.wait, 5)
        await asyncio.sleep(0.05)
        assert cache.stats()["loading"] == 1 and cache.stats()["running"] == 4
        assert cache.stats()["queued"] == 6
        loads.gate.set()
        models = []
        for task in tasks:  # leases are granted 4 at a time; release each as it comes
            lease = await task
            models.append(lease.model)
            assert lease.load_s >= 0
            lease.release()
        return models

    models = run(main)
    assert loads.count == Counter({"a": 1})
    assert all(m is models[0] for m in models)
    assert cache.stats() == {"budget_bytes": 1000, "used_bytes": 100, "models": 1, "loading": 0,
                             "running": 0, "queued": 0}
    cache.stop()


def test_full_queue_is_refused_at_once_with_retry_after(loads: Loads) -> None:
    cache = make(loads, queue=1)

    async def main() -> None:
        held = await cache.acquire(spec("a"))
        waiting = asyncio.ensure_future(cache.acquire(spec("a")))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as refused:
            await cache.acquire(spec("a"))
        assert refused.value.status == 503 and refused.value.retry_after_s >= 1
        assert cache.describe()[0]["running"] == 1 and cache.describe()[0]["queued"] == 1
        held.release()
        (await waiting).release()

    run(main)
    cache.stop()


def test_waiting_requests_are_served_round_robin_between_users(loads: Loads) -> None:
    cache = make(loads, queue=8)
    order: list[str] = []

    async def request(user: str, tag: str) -> None:
        lease = await cache.acquire(spec("a"), user=user)
        order.append(tag)
        await asyncio.sleep(0.01)
        lease.release()

    async def main() -> None:
        first = await cache.acquire(spec("a"), user="x")
        tasks = []
        for user, tag in [("x", "x1"), ("x", "x2"), ("x", "x3"), ("y", "y1"), ("z", "z1")]:
            tasks.append(asyncio.ensure_future(request(user, tag)))
            await asyncio.sleep(0.01)  # arrival order as listed
        first.release()
        await asyncio.gather(*tasks)

    run(main)
    assert order == ["x1", "y1", "z1", "x2", "x3"]
    cache.stop()


def test_least_recently_used_idle_model_is_evicted(loads: Loads) -> None:
    cache = make(loads, budget=250)

    async def use(model_id: str) -> None:
        (await cache.acquire(spec(model_id))).release()

    async def main() -> None:
        await use("a")
        await use("b")
        await use("a")  # b is now the least recently used
        await use("c")

    run(main)
    assert [m["model_id"] for m in cache.describe()] == ["c", "a"]
    assert cache.stats()["used_bytes"] == 200
    run(lambda: use("b"))  # evicts a, reloaded b
    assert loads.count == Counter({"a": 1, "b": 2, "c": 1})
    cache.stop()


def test_busy_models_are_not_evicted_and_too_large_ones_refused(loads: Loads) -> None:
    cache = make(loads, budget=150)

    async def main() -> None:
        held = await cache.acquire(spec("a"))
        with pytest.raises(CacheBusy) as busy:
            await cache.acquire(spec("b"))
        assert busy.value.status == 503 and busy.value.retry_after_s >= 1
        with pytest.raises(ModelTooLarge) as large:
            await cache.acquire(spec("c", size=151))
        assert large.value.status == 422
        assert [m["model_id"] for m in cache.describe()] == ["a"]
        held.release()
        (await cache.acquire(spec("b"))).release()

    run(main)
    assert [m["model_id"] for m in cache.describe()] == ["b"]
    assert cache.stats()["queued"] == 0 and cache.stats()["running"] == 0
    cache.stop()


def test_deadline_while_queued_leaves_the_queue(loads: Loads) -> None:
    cache = make(loads)

    async def main() -> None:
        held = await cache.acquire(spec("a"))
        with pytest.raises(WaitTimeout) as late:
            await cache.acquire(spec("a"), timeout=0.1)
        assert late.value.status == 504
        assert cache.stats()["queued"] == 0
        held.release()
        (await cache.acquire(spec("a"), timeout=1)).release()

    run(main)
    cache.stop()


def test_cancelled_waiter_leaves_the_queue_and_the_slot_goes_on(loads: Loads) -> None:
    cache = make(loads)

    async def main() -> None:
        held = await cache.acquire(spec("a"))
        quitter = asyncio.ensure_future(cache.acquire(spec("a"), user="q"))
        stayer = asyncio.ensure_future(cache.acquire(spec("a"), user="s"))
        await asyncio.sleep(0.05)
        quitter.cancel()
        await asyncio.sleep(0.05)
        assert cache.stats()["queued"] == 1
        held.release()
        lease = await asyncio.wait_for(stayer, 2)
        assert cache.stats()["running"] == 1
        lease.release()

    run(main)
    assert cache.stats()["running"] == 0
    cache.stop()


def test_a_failed_load_fails_its_waiters_and_the_next_request_retries() -> None:
    loads = Loads(fail={"bad"})
    cache = make(loads, slots=3)

    async def main() -> list[BaseException | object]:
        tasks = [cache.acquire(spec("bad")) for _ in range(3)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main)
    assert all(isinstance(r, ValueError) for r in results)
    assert loads.count["bad"] == 1
    assert cache.stats() == {"budget_bytes": 1000, "used_bytes": 0, "models": 0, "loading": 0,
                             "running": 0, "queued": 0}
    with pytest.raises(ValueError):
        run(lambda: cache.acquire(spec("bad")))
    assert loads.count["bad"] == 2
    cache.stop()


def test_lease_work_runs_in_compute_threads_and_frees_the_slot_when_it_ends(loads: Loads) -> None:
    cache = make(loads)
    threads: list[str] = []

    def work(x: int) -> int:
        threads.append(threading.current_thread().name)
        return x * 2

    async def main() -> int:
        lease = await cache.acquire(spec("a"))
        result = await lease.run(work, 21)
        assert cache.stats()["running"] == 0  # released by the work's end
        return result

    assert run(main) == 42
    assert threads[0].startswith("bitnet-infer")
    cache.stop()


def test_cancelling_the_caller_of_run_sets_the_cancel_flag(loads: Loads) -> None:
    cache = make(loads)
    started = threading.Event()

    def work(lease_cancel: threading.Event) -> None:
        started.set()
        assert lease_cancel.wait(5)

    async def main() -> None:
        lease = await cache.acquire(spec("a"))
        task = asyncio.ensure_future(lease.run(work, lease.cancel))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # the slot is freed when the work has really stopped
            if cache.stats()["running"] == 0:
                break
            await asyncio.sleep(0.02)
        assert lease.cancel.is_set() and cache.stats()["running"] == 0

    run(main)
    cache.stop()


def test_a_new_version_replaces_the_cached_copy(loads: Loads) -> None:
    cache = make(loads)

    async def model_of(s: ModelSpec) -> Any:
        lease = await cache.acquire(s)
        lease.release()
        return lease.model

    assert run(lambda: model_of(spec("a", version="v1")))["version"] == "v1"
    assert run(lambda: model_of(spec("a", version="v2")))["version"] == "v2"
    assert loads.count["a"] == 2 and len(cache.describe()) == 1
    cache.invalidate("a")
    assert cache.describe() == []
    cache.stop()


def test_thread_api_waits_times_out_and_honours_cancel(loads: Loads) -> None:
    cache = make(loads)
    held = cache.acquire_sync(spec("a"))
    with pytest.raises(WaitTimeout):
        cache.acquire_sync(spec("a"), timeout=0.1)
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    with pytest.raises(WaitCancelled):
        cache.acquire_sync(spec("a"), cancel=cancel)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(cache.acquire_sync(spec("a"), timeout=5)))
    waiter.start()
    held.release()
    waiter.join(5)
    assert got and got[0].model is held.model
    got[0].release()
    assert cache.stats()["running"] == 0 and cache.stats()["queued"] == 0
    cache.stop()


def test_stop_fails_waiters_cancels_work_and_refuses_new_requests(loads: Loads) -> None:
    cache = make(loads)

    async def main() -> None:
        held = await cache.acquire(spec("a"))
        waiting = asyncio.ensure_future(cache.acquire(spec("a")))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(cache.stop)
        with pytest.raises(CacheStopped):
            await waiting
        assert held.cancel.is_set()
        with pytest.raises(CacheStopped):
            await cache.acquire(spec("b"))
        held.release()

    run(main)


def test_describe_matches_the_loaded_model_schema(loads: Loads) -> None:
    from openapi_schema_validator import OAS30Validator

    from bitnet_sdk.server.spec import load_spec

    cache = make(loads)
    run(lambda: _use(cache, spec("mdl_0123456789abc")))
    components = load_spec()["components"]
    schema = {"$ref": "#/components/schemas/LoadedModel", "components": components}
    (row,) = cache.describe()
    errors = list(OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER)
                  .iter_errors(row))
    assert not errors, errors
    assert row["memory_bytes"] == 100 and row["running"] == 0
    cache.stop()


async def _use(cache: ModelCache, s: ModelSpec) -> None:
    (await cache.acquire(s)).release()
