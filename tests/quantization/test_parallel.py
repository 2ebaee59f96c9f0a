"""The quantizer's BLAS limit is shared by concurrent runs and restored by the last one."""

from __future__ import annotations

from threadpoolctl import threadpool_info  # type: ignore[import-untyped]

from bitnet_sdk.quantization.parallel import blas_single_threaded, pool, workers


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_overlapping_runs_restore_the_original_blas_threads() -> None:
    before = _blas_threads()
    a, b = blas_single_threaded(), blas_single_threaded()
    a.__enter__()
    b.__enter__()
    assert all(n == 1 for n in _blas_threads())
    a.__exit__(None, None, None)  # the first run ends while the second still runs
    assert all(n == 1 for n in _blas_threads())
    b.__exit__(None, None, None)
    assert _blas_threads() == before


def test_one_pool_for_the_process() -> None:
    assert pool() is pool()
    assert pool()._max_workers == workers() >= 1
