"""Row splitting and the thread pool."""

from __future__ import annotations

import threading

import pytest
from bitnet_kernels.threads import THREADS_ENV, ThreadPool, default_threads, split_range


@pytest.mark.parametrize(("end", "parts", "align"), [(0, 2, 4), (4, 8, 4), (103, 2, 4), (1000, 3, 1), (64, 64, 64)])
def test_split_range_covers_everything_in_aligned_slices(end: int, parts: int, align: int) -> None:
    slices = split_range(0, end, parts, align)
    assert len(slices) <= parts
    covered = [i for b, e in slices for i in range(b, e)]
    assert covered == list(range(end))
    assert all(b % align == 0 and e > b for b, e in slices)


def test_default_threads() -> None:
    assert default_threads(3, {}) == 3
    assert default_threads(None, {THREADS_ENV: "5"}) == 5
    assert default_threads(2, {THREADS_ENV: "5"}) == 2
    assert default_threads(None, {}) >= 1
    with pytest.raises(ValueError, match="integer"):
        default_threads(None, {THREADS_ENV: "many"})
    with pytest.raises(ValueError, match=">= 1"):
        default_threads(0, {})


def test_pool_runs_every_slice_once_on_several_threads() -> None:
    pool = ThreadPool(3)
    try:
        seen: list[tuple[int, int, str]] = []
        lock = threading.Lock()

        def work(b: int, e: int) -> None:
            with lock:
                seen.append((b, e, threading.current_thread().name))

        slices = split_range(0, 12, 3, 4)
        pool.run(work, slices)
        assert sorted((b, e) for b, e, _ in seen) == slices
        assert (0, 4, threading.current_thread().name) in seen  # the caller runs slice 0
    finally:
        pool.close()


def test_pool_reraises_worker_errors() -> None:
    pool = ThreadPool(2)
    try:
        def work(b: int, e: int) -> None:
            if b:
                raise RuntimeError(f"slice {b}")

        with pytest.raises(RuntimeError, match="slice 4"):
            pool.run(work, [(0, 4), (4, 8)])
    finally:
        pool.close()


def test_more_slices_than_threads_all_run() -> None:
    pool = ThreadPool(2)
    try:
        seen: list[tuple[int, int]] = []
        lock = threading.Lock()

        def work(b: int, e: int) -> None:
            with lock:
                seen.append((b, e))

        slices = [(i, i + 1) for i in range(7)]
        pool.run(work, slices)
        assert sorted(seen) == slices
    finally:
        pool.close()


def test_a_busy_pool_runs_a_second_caller_inline() -> None:
    """Two threads sharing one pool: the second runs its own slices, nobody deadlocks."""
    pool = ThreadPool(2)
    try:
        inside, release = threading.Event(), threading.Event()
        names: list[str] = []

        def slow(b: int, e: int) -> None:
            if b == 0:
                inside.set()
                assert release.wait(10)

        first = threading.Thread(target=pool.run, args=(slow, [(0, 1), (1, 2)]))
        first.start()
        assert inside.wait(10)
        pool.run(lambda b, e: names.append(threading.current_thread().name), [(0, 1), (1, 2)])
        assert names == [threading.current_thread().name] * 2
        release.set()
        first.join(10)
        assert not first.is_alive()
    finally:
        pool.close()
