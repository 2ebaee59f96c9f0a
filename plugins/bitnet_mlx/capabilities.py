"""The ops the MLX backend runs natively: every one (fused MLX kernels where MLX has them).

Its own module so the package (which must import without MLX) and the backend (which
imports MLX) share it without importing each other.
"""

from __future__ import annotations

from bitnet_sdk.backends import OPTIONAL_OPS, REQUIRED_OPS

__all__ = ["CAPABILITIES"]

CAPABILITIES = frozenset(REQUIRED_OPS + OPTIONAL_OPS)
