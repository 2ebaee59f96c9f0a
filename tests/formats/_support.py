"""Helpers shared by the format tests: random ternary tensors and block-wise byte comparison."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from bitnet_sdk.ternary import TernaryTensor


def random_ternary(
    rng: np.random.Generator,
    rows: int,
    cols: int,
    *,
    block: int = 256,
    zero_block_prob: float = 0.2,
    per_row_scale: bool = True,
    fp16_scales: bool = False,
    allow_negative: bool = False,
) -> TernaryTensor:
    """A ternary tensor with random sparsity, some all-zero blocks, and random scales."""
    density = rng.uniform(0.05, 1.0)
    q = rng.choice(np.array([-1, 1], dtype=np.int8), size=(rows, cols))
    q[rng.random((rows, cols)) > density] = 0
    zero_blocks = rng.random((rows, cols // block)) < zero_block_prob
    q.reshape(rows, cols // block, block)[zero_blocks] = 0
    n_scales = rows if per_row_scale else 1
    scale = rng.uniform(1e-3, 4.0, n_scales).astype(np.float32)
    if allow_negative:
        scale *= rng.choice(np.array([-1, 1], dtype=np.float32), n_scales)
    if fp16_scales:
        scale = scale.astype(np.float16).astype(np.float32)
    return TernaryTensor(q, np.broadcast_to(scale, (rows,)).copy())


def from_params(params: dict, **kwargs: object) -> TernaryTensor:
    """:func:`random_ternary` from :func:`tensor_params` (without mutating the drawn dict)."""
    p = dict(params)
    rng = np.random.default_rng(p.pop("seed"))
    return random_ternary(rng, **p, **kwargs)  # type: ignore[arg-type]


@st.composite
def tensor_params(draw: st.DrawFn, max_blocks: int = 3, block: int = 256) -> dict:
    """Shape and seed for :func:`random_ternary` (rows 1..64, cols a few blocks)."""
    return {
        "rows": draw(st.integers(1, 64)),
        "cols": block * draw(st.integers(1, max_blocks)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "zero_block_prob": draw(st.sampled_from([0.0, 0.2, 0.7])),
        "per_row_scale": draw(st.booleans()),
    }


def assert_same_blocks(expected: np.ndarray, got: np.ndarray, block_bytes: int, what: str) -> None:
    """Assert byte equality; on mismatch name the worst block and show both versions of it."""
    expected = np.asarray(expected, dtype=np.uint8).reshape(-1)
    got = np.asarray(got, dtype=np.uint8).reshape(-1)
    assert expected.size == got.size, f"{what}: expected {expected.size} bytes, got {got.size}"
    if np.array_equal(expected, got):
        return
    n = expected.size // block_bytes * block_bytes
    diff = (expected[:n] != got[:n]).reshape(-1, block_bytes).sum(axis=1)
    worst = int(np.argmax(diff))
    sl = slice(worst * block_bytes, (worst + 1) * block_bytes)
    tail = (
        ""
        if n == expected.size
        else f"; trailer differs: {not np.array_equal(expected[n:], got[n:])}"
    )
    raise AssertionError(
        f"{what}: {int((diff > 0).sum())} of {diff.size} blocks differ{tail}; worst block "
        f"{worst} ({int(diff[worst])} bytes differ)\n"
        f"  expected: {expected[sl].tobytes().hex()}\n"
        f"  got:      {got[sl].tobytes().hex()}"
    )


def assert_tensors_equal(expected: TernaryTensor, got: TernaryTensor) -> None:
    """Exact equality of codes and scales, naming the first differing row."""
    assert got.shape == expected.shape
    bad_rows = np.flatnonzero(np.any(expected.q != got.q, axis=1) | (expected.scale != got.scale))
    assert bad_rows.size == 0, (
        f"{bad_rows.size} rows differ, first {bad_rows[0]}: scale {expected.scale[bad_rows[0]]} "
        f"vs {got.scale[bad_rows[0]]}, codes differ at columns "
        f"{np.flatnonzero(expected.q[bad_rows[0]] != got.q[bad_rows[0]])[:8]}"
    )
