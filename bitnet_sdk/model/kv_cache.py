"""The run state of a BitNet model: per-layer key/value cache.

Each layer keeps keys and values of every position seen so far as float32
(or, with ``dtype=np.float16``, half the memory: llama.cpp's default KV type)
``[t, n_kv_heads, head_dim]``, the layout ``Backend.attention`` reads. Storage
grows by doubling up to ``max_positions`` so a short chat does not pay for the
model's whole context window (30 layers x 4096 positions of the 2B-4T model
would be 630 MB up front).

Positions are appended in order: a forward pass at ``start_pos`` writes rows
``start_pos .. start_pos + n - 1`` and everything after them is forgotten, which
is how a caller rewinds (regenerate from a shared prompt prefix).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ContextOverflowError", "KVCache"]

#: First allocation, in positions; doubled on demand.
_INITIAL_CAPACITY = 64


class ContextOverflowError(ValueError):
    """A forward pass would run past the cache's ``max_positions``."""


class KVCache:
    """Keys and values of ``n_layers`` layers for positions ``0 .. length-1``.

    Not thread-safe: one cache belongs to one generation at a time.
    """

    def __init__(
        self, n_layers: int, n_kv_heads: int, head_dim: int, max_positions: int,
        dtype: type | np.dtype = np.float32,
    ) -> None:  # fmt: skip
        if min(n_layers, n_kv_heads, head_dim, max_positions) <= 0:
            raise ValueError("KVCache dimensions must be positive")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"KVCache dtype must be float32 or float16, got {self.dtype}")
        self.n_layers = n_layers
        self.n_kv_heads = n_kv_heads
        self.head_dim = head_dim
        self.max_positions = max_positions
        self._capacity = 0
        self._k: list[np.ndarray] = []  # per layer: [capacity, n_kv_heads, head_dim]
        self._v: list[np.ndarray] = []
        self._length = 0

    @property
    def length(self) -> int:
        """Number of positions whose keys and values are stored."""
        return self._length

    @property
    def nbytes(self) -> int:
        """Bytes currently allocated (both keys and values, all layers)."""
        return sum(a.nbytes for a in self._k) + sum(a.nbytes for a in self._v)

    def reset(self) -> None:
        """Forget every position (storage is kept for reuse)."""
        self._length = 0

    def truncate(self, length: int) -> None:
        """Keep only positions ``0 .. length-1``."""
        if not 0 <= length <= self._length:
            raise ValueError(f"cannot truncate a cache of {self._length} positions to {length}")
        self._length = length

    def copy_from(self, other: KVCache, length: int | None = None) -> None:
        """Become a copy of ``other``'s first ``length`` positions (default: all of them).

        Sequences that share a prompt fork here.
        """
        if (other.n_layers, other.n_kv_heads, other.head_dim) != (
                self.n_layers, self.n_kv_heads, self.head_dim):
            raise ValueError("cannot copy a KV cache of another shape")
        n = other.length if length is None else length
        if not 0 <= n <= other.length:
            raise ValueError(f"cannot copy {n} positions of a cache of {other.length}")
        if n > self.max_positions:
            raise ContextOverflowError(
                f"{n} positions exceed the context window of {self.max_positions}")
        self._length = 0
        if n == 0:
            return
        self._reserve(n)
        for mine, theirs in ((self._k, other._k), (self._v, other._v)):
            for layer in range(len(theirs)):
                mine[layer][:n] = theirs[layer][:n]
        self._length = n

    def _reserve(self, positions: int) -> None:
        if positions <= self._capacity:
            return
        capacity = max(self._capacity, _INITIAL_CAPACITY)
        while capacity < positions:
            capacity *= 2
        capacity = min(capacity, self.max_positions)
        shape = (capacity, self.n_kv_heads, self.head_dim)
        for store in (self._k, self._v):
            for i in range(self.n_layers):
                grown = np.empty(shape, dtype=self.dtype)
                if store and i < len(store):
                    grown[: self._length] = store[i][: self._length]
                    store[i] = grown
                else:
                    store.append(grown)
        self._capacity = capacity

    def update(
        self, layer: int, start_pos: int, k: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Store ``k, v [n, n_kv_heads, head_dim]`` at ``start_pos`` for ``layer``.

        Returns views ``(k_all, v_all)`` of shape ``[start_pos + n, n_kv_heads,
        head_dim]``: the whole history the new queries attend to. The cache
        length advances when the last layer is written, so a forward pass that
        fails halfway leaves the cache at its previous length.
        """
        n = k.shape[0]
        end = start_pos + n
        self._check_write(start_pos, end)
        self._k[layer][start_pos:end] = k
        self._v[layer][start_pos:end] = v
        if layer == self.n_layers - 1:
            self._length = end
        return self._k[layer][:end], self._v[layer][:end]

    def storage(self, start_pos: int, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per-layer key and value arrays ``[capacity, n_kv_heads, head_dim]`` with room for
        positions ``start_pos .. start_pos + n - 1``, for a caller that writes them in place
        (a compiled forward step); it calls ``commit(start_pos + n)`` once every layer is written.

        Same checks as ``update``. The arrays are replaced when the cache grows, so they are
        valid until the next ``storage``, ``update`` or ``copy_from``.
        """
        self._check_write(start_pos, start_pos + n)
        return self._k, self._v

    def commit(self, end: int) -> None:
        """Positions ``0 .. end-1`` are now stored (after writing ``storage`` in place)."""
        if not 0 <= end <= self._capacity:
            raise ValueError(f"cannot commit {end} positions to a cache of capacity {self._capacity}")
        self._length = end

    def _check_write(self, start_pos: int, end: int) -> None:
        if start_pos > self._length:
            raise ValueError(f"start_pos {start_pos} leaves a gap after {self._length} cached positions")
        if end > self.max_positions:
            raise ContextOverflowError(
                f"{end} positions exceed the context window of {self.max_positions}"
            )
        self._reserve(end)
