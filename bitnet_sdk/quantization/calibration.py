"""Calibration inputs: what the quantized layers and models are measured on.

``quantize(..., calibration=...)`` accepts:

* ``None`` — random inputs (standard normal, seeded): :data:`DEFAULT_SAMPLES` rows;
* an ``int`` — that many random rows;
* an array — for a dense model, its (single) input batch; for a language model, layer inputs
  ``[n, k]`` used for every projection reading ``k`` features (others get random rows);
* a mapping — for a dense model, input name → batch; for a language model, tensor name →
  ``[n, cols]`` inputs of that projection.

Random rows are drawn from one generator seeded by ``seed``, so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np

from bitnet_sdk.dense.graph import ValueInfo
from bitnet_sdk.quantization.errors import QuantizationError

__all__ = ["DEFAULT_SAMPLES", "Calibration", "CalibrationSpec"]

DEFAULT_SAMPLES = 16
#: What ``quantize(calibration=...)`` accepts.
CalibrationSpec: TypeAlias = "int | np.ndarray | Mapping[str, Any] | None"


class Calibration:
    """Calibration inputs for one run (see the module docstring)."""

    def __init__(self, spec: Any, seed: int = 0) -> None:
        self.seed = seed
        self.samples = DEFAULT_SAMPLES
        self.array: np.ndarray | None = None
        self.mapping: dict[str, np.ndarray] = {}
        if spec is None:
            pass
        elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            if spec < 1:
                raise QuantizationError(f"calibration sample count must be positive, got {spec}")
            self.samples = int(spec)
        elif isinstance(spec, Mapping):
            self.mapping = {str(k): np.asarray(v, dtype=np.float32) for k, v in spec.items()}
        else:
            try:
                self.array = np.asarray(spec, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise QuantizationError(f"calibration must be a count, an array or a mapping, got {type(spec).__name__}") from exc
        self._random: dict[int, np.ndarray] = {}
        self.user_supplied = self.array is not None or bool(self.mapping)

    def _rows(self, k: int) -> np.ndarray:
        if k not in self._random:
            rng = np.random.default_rng([self.seed, k])
            self._random[k] = rng.standard_normal((self.samples, k)).astype(np.float32)
        return self._random[k]

    def layer_inputs(self, name: str, source_name: str, cols: int) -> np.ndarray:
        """``[n, cols]`` inputs for the projection ``name`` of a language model."""
        for key in (name, source_name):
            if key in self.mapping:
                x = self.mapping[key]
                if x.ndim != 2 or x.shape[1] != cols:
                    raise QuantizationError(f"calibration inputs for {key} must be [n, {cols}], got {list(x.shape)}")
                return x
        if self.array is not None and self.array.ndim == 2 and self.array.shape[1] == cols:
            return self.array
        return self._rows(cols)

    def model_inputs(self, inputs: tuple[ValueInfo, ...]) -> dict[str, np.ndarray]:
        """A batch for every input of a dense model (free dimensions: batch rows, else 1)."""
        if self.array is not None:
            if len(inputs) != 1:
                raise QuantizationError(f"the model has inputs {[v.name for v in inputs]}; pass calibration as a mapping")
            return {inputs[0].name: self.array}
        out: dict[str, np.ndarray] = {}
        for i, vi in enumerate(inputs):
            if vi.name in self.mapping:
                out[vi.name] = self.mapping[vi.name]
                continue
            shape = [self.samples if (d is None and j == 0) else (d or 1) for j, d in enumerate(vi.shape)]
            rng = np.random.default_rng([self.seed, 1000 + i])
            out[vi.name] = rng.standard_normal(shape).astype(np.float32)
        return out

    def describe(self) -> dict[str, Any]:
        return {"source": "user" if self.user_supplied else "random", "seed": self.seed, "samples": self.samples}
