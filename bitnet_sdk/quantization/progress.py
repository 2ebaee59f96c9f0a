"""Progress reporting and cancellation for one quantization run.

The caller's callback is called as ``callback(done, total, stage)``: ``done`` and ``total`` count
steps (one per tensor written, plus the validation and measurement steps), ``stage`` names what
was just finished (a tensor name, ``"validate"``, ``"measure"``...). Returning ``False`` or raising
:class:`~bitnet_sdk.quantization.errors.Cancelled` stops the run: the pipeline removes its temporary
output and raises :class:`~bitnet_sdk.quantization.errors.QuantizationCancelled`. Any other exception
from the callback propagates unchanged, after the same clean-up.
"""

from __future__ import annotations

from collections.abc import Callable

from bitnet_sdk.quantization.errors import Cancelled, QuantizationCancelled

__all__ = ["Progress", "ProgressCallback"]

#: ``callback(done, total, stage) -> None | bool``; ``False`` cancels.
ProgressCallback = Callable[[int, int, str], "bool | None"]


class Progress:
    """Counts steps and forwards them to an optional callback, turning cancellation into
    :class:`QuantizationCancelled`."""

    def __init__(self, callback: ProgressCallback | None, total: int = 0) -> None:
        self.callback = callback
        self.total = total
        self.done = 0

    def start(self, total: int, stage: str = "start") -> None:
        """Set the number of steps and report step 0 (a first chance to cancel)."""
        self.total = total
        self.done = 0
        self._emit(stage)

    def step(self, stage: str) -> None:
        """One more step finished."""
        self.done = min(self.done + 1, self.total) if self.total else self.done + 1
        self._emit(stage)

    def _emit(self, stage: str) -> None:
        if self.callback is None:
            return
        try:
            answer = self.callback(self.done, self.total, stage)
        except Cancelled as exc:
            raise QuantizationCancelled(f"cancelled by the progress callback at {stage!r}") from exc
        if answer is False:
            raise QuantizationCancelled(f"cancelled by the progress callback at {stage!r}")
