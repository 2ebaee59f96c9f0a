"""Exceptions of the quantization pipeline.

Every error the pipeline raises on purpose is a :class:`QuantizationError`, so callers (the CLI,
the server's job runner) can tell "this source or request cannot be quantized" from a bug.
Cancellation has its own pair: a progress callback raises :class:`Cancelled` (or returns
``False``) and ``quantize`` answers with :class:`QuantizationCancelled` once it has cleaned up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "Cancelled",
    "MissingDependencyError",
    "OutputInvalidError",
    "QuantizationCancelled",
    "QuantizationError",
    "UnsupportedOpsError",
    "UnsupportedSourceError",
]


class QuantizationError(RuntimeError):
    """Base class: the quantization could not be done; nothing was written."""


class UnsupportedSourceError(QuantizationError, ValueError):
    """The source is not something the pipeline can read (kind, layout, tensors, tokenizer)."""


class MissingDependencyError(UnsupportedSourceError, ImportError):
    """Reading this source needs an optional package that is not installed."""

    def __init__(self, package: str, extra: str, what: str) -> None:
        super().__init__(
            f"{what} needs the optional package {package!r}, which is not installed; "
            f"install it with: pip install 'bitnet-sdk[{extra}]'"
        )
        self.package = package
        self.extra = extra


class UnsupportedOpsError(UnsupportedSourceError):
    """An ONNX graph uses operators the dense runtime does not implement.

    ``nodes`` lists every offending ``(op_type, node_name)`` pair, so a user sees all of them
    at once instead of fixing one per run.
    """

    def __init__(self, nodes: Sequence[tuple[str, str]], supported: Sequence[str]) -> None:
        listed = ", ".join(f"{op} (node {name!r})" for op, name in nodes)
        super().__init__(
            f"unsupported ONNX operators: {listed}; supported: {', '.join(sorted(supported))}"
        )
        self.nodes = list(nodes)


class OutputInvalidError(QuantizationError):
    """The file written failed re-validation, so it was deleted instead of published."""

    def __init__(self, problems: Sequence[Any]) -> None:
        text = "; ".join(getattr(p, "message", str(p)) for p in problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"the quantized file failed validation: {text}{more}")
        self.problems = list(problems)


class Cancelled(Exception):
    """Raise from a progress callback to stop the quantization."""


class QuantizationCancelled(QuantizationError):
    """The progress callback asked to stop; the partial output was removed."""
